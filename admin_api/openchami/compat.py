"""What every OpenCHAMI-compatible route shares: where they live, how bodies and queries are read.

OpenCHAMI's clients (ochami, coresmd, magellan) differ from Chamicore's own
in ways that are the same on every route: ochami sends JSON bodies with no
Content-Type, SMD matches JSON keys and query names in any case, replies are
bare PascalCase objects rather than envelopes.  The rules themselves (what
may be written, by whom) stay in the native code these routes call.

The face is served under PREFIX, so that its paths never meet the native
routes that share OpenCHAMI's names (`/hsm/v2/State/Components` answers with
an envelope natively): point ochami's `cluster.uri` at `<admin URL>/openchami`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import check_values, json_response, problem
from admin_api.routing import request_bytes
from core.problems import ProblemError, title_for

PREFIX = "/openchami"
# ochami sends no Content-Type on POST, PUT, PATCH and DELETE; magellan sends application/json.
BODY_TYPES = ("application/json", "")


async def json_body(request: Request) -> Any:
    """The body as generic JSON (objects as dicts), read within the operation's size cap; 400 when it is not JSON.
    An empty body reads as None."""
    raw = await request_bytes(request)
    if not raw.strip():
        return None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise problem(400, f"error decoding JSON: {exc}") from None
    except RecursionError:
        raise problem(400, "the body is nested too deeply") from None
    check_values(value)
    return value


def json_object(value: Any, what: str = "the body") -> dict:
    if not isinstance(value, dict):
        raise problem(400, f"{what} must be a JSON object")
    return value


def key(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """`obj[name]` with the key matched in any case, as Go's JSON decoder does (ochami sends `Force`, SMD
    documents `force`)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for candidate, value in obj.items():
        if candidate.lower() == lowered:
            return value
    return default


def query_values(request: Request, name: str) -> list[str]:
    """Every value of a query parameter, its name matched in any case; repeated keys and comma-separated
    values both make lists (`xname=a&xname=b`, `nid=1,2`).  Empty values are dropped."""
    lowered = name.lower()
    values: list[str] = []
    for candidate, value in request.query_params.multi_items():
        if candidate.lower() == lowered:
            values.extend(part.strip() for part in value.split(",") if part.strip())
    return values


def query_value(request: Request, name: str) -> str | None:
    values = query_values(request, name)
    return values[0] if values else None


def message(text: str, status: int = 200) -> Response:
    """SMD's success body."""
    return json_response({"code": 0, "message": text}, status)


def no_content() -> Response:
    return Response(status_code=204)


@contextlib.contextmanager
def as_bad_request() -> Iterator[None]:
    """Chamicore's validation answers 422 where SMD answers 400: the rule stays native, the status is SMD's."""
    try:
        yield
    except ProblemError as exc:
        if exc.problem.status == 422:
            exc.problem.status, exc.problem.title = 400, title_for(400)
        raise
