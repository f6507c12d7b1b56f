"""RFC 9457 problem details, shared by the admin API and the boot path."""

from __future__ import annotations

import msgspec

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(msgspec.Struct, omit_defaults=True):
    """One invalid field: a JSON-pointer-like path and what is wrong with it."""

    field: str
    detail: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str = "about:blank"
    title: str = ""
    status: int = 500
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise anywhere in a request to answer with this problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(type=type, title=title_for(status), status=status, detail=detail, errors=errors)
        self.headers = headers or {}


def title_for(status: int) -> str:
    return _TITLES.get(status, "Error")


def problem_bytes(status: int, detail: str, instance: str | None = None) -> bytes:
    return msgspec.json.encode(Problem(title=title_for(status), status=status, detail=detail, instance=instance))
