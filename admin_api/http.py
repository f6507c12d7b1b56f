"""Request and response plumbing shared by every admin route.

Bodies are read with a size cap (413), mutations must say they are JSON
(415), decoding goes straight into the route's msgspec type so unknown
fields, wrong types and bad enums are 422 problems with field paths, and
every answer is encoded by msgspec.  What msgspec lets through but nothing
downstream should see is refused here too, once for every route: nesting
deeper than MAX_DEPTH, and control characters in any string.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from core.problems import PROBLEM_CONTENT_TYPE, FieldError, Problem, ProblemError

T = TypeVar("T")

MAX_BODY = 1 << 20  # 1 MiB
MAX_BULK_BODY = 32 << 20  # 32 MiB
JSON_TYPES = ("application/json",)
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/json")
# Levels of objects and arrays in a body: far beyond any real spec, far below the recursion limit that
# merging, encoding and rendering a document meet (a merge patch 957 levels deep was a 500).
MAX_DEPTH = 64
# C0 and C1 control characters but tab, newline and carriage return (text has those), and lone surrogates
# (which cannot be stored as UTF-8).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,12}")

_PATH_RE = re.compile(r"- at `(\$[^`]*)`")
_encoder = msgspec.json.Encoder()


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(content), status_code=status, headers=headers, media_type="application/json")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(problem), status_code=problem.status, headers=headers,
                    media_type=PROBLEM_CONTENT_TYPE)


def problem(status: int, detail: str, **kwargs) -> ProblemError:
    return ProblemError(status, detail, **kwargs)


def field_problem(field: str, detail: str, status: int = 422) -> ProblemError:
    return ProblemError(status, f"{field}: {detail}", errors=[FieldError(field, detail)])


async def read_body(request: Request, limit: int = MAX_BODY, content_types: tuple[str, ...] = JSON_TYPES) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in content_types:
        raise problem(415, f"send the body as {' or '.join(content_types)} (got {media_type or 'no content type'})")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise problem(413, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise problem(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, type_: type[T]) -> T:
    """JSON into `type_`, or a 400 (not JSON) / 422 (not the right shape) problem."""
    try:
        value = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise validation_problem(exc) from None
    except msgspec.DecodeError as exc:
        raise problem(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise problem(400, "the body is nested too deeply") from None
    check_values(value)
    return value


def convert(value: Any, type_: type[T], prefix: str = "$") -> T:
    try:
        converted = msgspec.convert(value, type=type_)
    except msgspec.ValidationError as exc:
        raise validation_problem(exc, prefix) from None
    except RecursionError:
        raise problem(400, "the value is nested too deeply") from None
    check_values(converted, prefix)
    return converted


def check_values(value: Any, prefix: str = "$") -> int:
    """Refuse nesting deeper than MAX_DEPTH (400) and control characters in any string, key or value (422);
    the number of values `value` holds, itself included.

    Iterative, so that a deep value cannot exhaust the stack here.  `prefix` names the value in problems."""
    stack: list[tuple[Any, int, tuple | None]] = [(value, 0, None)]  # (value, depth, (parent path, key))
    count = 0
    while stack:
        item, depth, path = stack.pop()
        count += 1
        if isinstance(item, str):
            if found := _CONTROL.search(item):
                raise field_problem(_path_text(prefix, path), _control_detail(found.group()))
            continue
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        elif isinstance(item, msgspec.Struct):
            children = zip(item.__struct_encode_fields__, msgspec.structs.astuple(item), strict=True)
        else:
            continue
        if depth >= MAX_DEPTH:
            raise problem(400, f"the body is nested more than {MAX_DEPTH} levels deep")
        for key, child in children:
            if isinstance(key, str) and (found := _CONTROL.search(key)):
                raise field_problem(_path_text(prefix, path), f"a key {_control_detail(found.group())}")
            stack.append((child, depth + 1, (path, key)))
    return count


def _control_detail(char: str) -> str:
    what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"holds {what} (U+{ord(char):04X}); of the control characters only tab, newline and carriage return " \
           f"may appear in text"


def _path_text(prefix: str, path: tuple | None) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(f"[{key}]" if isinstance(key, int) else f".{str(key)[:64]}")
    return prefix + "".join(reversed(keys))


def validation_error(exc: msgspec.ValidationError, prefix: str = "$") -> FieldError:
    message = str(exc)
    match = _PATH_RE.search(message)
    path = match.group(1) if match else "$"
    if prefix != "$":
        path = prefix + path[1:]
    return FieldError(path, _PATH_RE.sub("", message).strip())


def validation_problem(exc: msgspec.ValidationError, prefix: str = "$") -> ProblemError:
    error = validation_error(exc, prefix)
    return ProblemError(422, f"{error.field}: {error.detail}", errors=[error])


def query_int(request: Request, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise field_problem(name, f"expected a whole number, got {raw[:40]!r}", 400)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise field_problem(name, f"must be {bound}", 400)
    return value


def query_flag(request: Request, name: str) -> bool:
    """`?dryRun=true` (or 1, yes): the first value given, false when absent."""
    return (query_list(request, name) or ["false"])[0].lower() in ("1", "true", "yes")


def query_list(request: Request, name: str) -> list[str]:
    """`?type=Node,Switch&type=BMC` -> ["Node", "Switch", "BMC"] (comma = OR)."""
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def query_states(request: Request, allowed, what: str = "state") -> list[str]:
    """`?state=a,b` checked against the states a list has: an unknown one is a 400 naming the known ones."""
    states = query_list(request, "state")
    if bad := [s for s in states if s not in allowed]:
        raise field_problem("state", f"unknown {what} {bad[0][:40]!r}; one of {', '.join(allowed)}", 400)
    return states


def check_if_match(request: Request, current_etag: str, *, required: bool = True) -> None:
    """PUT needs the ETag it read: 428 without it, 412 when it changed since.
    PATCH (required=False) checks it only when sent."""
    sent = request.headers.get("if-match")
    if sent is None:
        if not required:
            return
        raise problem(428, "send If-Match with the ETag from your last GET, so no one else's change is overwritten")
    candidates = [tag.strip() for tag in sent.split(",")]
    if "*" not in candidates and current_etag not in candidates and f"W/{current_etag}" not in candidates:
        raise problem(412, "the resource changed since you read it; GET it again and retry",
                      headers={"ETag": current_etag})


def not_modified(request: Request, etag: str) -> bool:
    sent = request.headers.get("if-none-match")
    return sent is not None and (sent.strip() == "*" or etag in [t.strip() for t in sent.split(",")])


def spec_patch(patch: dict) -> dict:
    """The `spec` part of a JSON merge patch body (RFC 7396); anything else in it is a 422."""
    unknown = sorted(set(patch) - {"spec", "metadata", "kind", "apiVersion"})
    if unknown:
        raise field_problem(f"$.{unknown[0][:64]}", "unknown field; a patch changes `spec`")
    spec = patch.get("spec", {})
    if not isinstance(spec, dict):
        raise field_problem("$.spec", "a spec patch is an object")
    return spec


def patched(spec: msgspec.Struct, patch: dict, type_: type[T]) -> T:
    """`spec` with a JSON merge patch applied, checked again as `type_` (422s name `$.spec...` fields)."""
    return convert(merge_patch(msgspec.to_builtins(spec), patch), type_, "$.spec")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result

