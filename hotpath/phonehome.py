"""POST /cloud-init/.../phone-home: cloud-init's phone_home module says a node finished booting.

The one route of the boot path that takes a body.  It is asked once per boot
(not per request of a storm), so it is plain Python; it only reads the index
and tells the caller which node is ready, and the caller records the stage in
memory (hotpath/telemetry.py): no I/O here.

Who may phone home: the rule of a by-id cloud-init read (hotpath/_dispatch.pyx),
so a node can mark only itself.
- `/cloud-init/phone-home`: the node that owns the requester's address (the
  URL every node's user-data carries with CHAMICORE_PHONE_HOME: one document for
  all, shared in memory).
- `/cloud-init/<id>/<token>/phone-home`: anyone presenting the node's seed token
  (for a node behind NAT, whose own user-data can carry its own URL).
- `/cloud-init/<id>/phone-home`, or a wrong token: only from one of that node's
  addresses.
Anyone else gets the 404 a cloud-init read gets.  If the body names an
instance_id, it must be one of this node's (`<node id>-<16 hex>`): a node
cannot report another's boot under its own credentials.

The body is bounded (Content-Length required, at most MAX_BODY bytes) and
read with a deadline, so a slow or endless sender holds nothing for long.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from hmac import compare_digest
from urllib.parse import parse_qs

from core.problems import problem_bytes

PATH = "/cloud-init/phone-home"
SUFFIX = "/phone-home"
MAX_BODY = 8192  # instance_id, hostname, fqdn, even the four host keys of `post: all`, fit in well under this
READ_TIMEOUT_S = 5.0
_INSTANCE = re.compile(r"(?P<node>.+)-[0-9a-f]{16}")
_NOT_FOUND = problem_bytes(404, "no such node, or this requester may not phone home for it")
_NEED_LENGTH = problem_bytes(411, "phone-home needs a Content-Length")
_TOO_LARGE = problem_bytes(413, f"a phone-home body is at most {MAX_BODY} bytes")
_TOO_SLOW = problem_bytes(408, f"the phone-home body did not arrive within {READ_TIMEOUT_S:g} s")
_NOT_FORM = problem_bytes(400, "expected a form-encoded body (instance_id=...&hostname=...)")
_NOT_ITS_INSTANCE = problem_bytes(403, "instance_id is not one of this node's")


def is_phone_home(path: str) -> bool:
    return path.startswith("/cloud-init/") and path.endswith(SUFFIX)


async def answer(path: str, header: Callable[[str], str | None], client_ip: Callable[[], str],
                 read_body: Callable[[], Awaitable[bytes]], index) -> tuple[int, bytes, str | None]:
    """(status, problem body or b"", the node that is ready or None)."""
    length = header("content-length")
    if length is None or not (length.isascii() and length.isdigit()) or len(length) > 9:
        return 411, _NEED_LENGTH, None
    if int(length) > MAX_BODY:
        return 413, _TOO_LARGE, None
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            body = await read_body()
    except TimeoutError:
        return 408, _TOO_SLOW, None
    node_id = _node(path[len("/cloud-init/"):-len(SUFFIX)], client_ip, index)
    if node_id is None:
        return 404, _NOT_FOUND, None
    try:
        form = parse_qs(body[:MAX_BODY].decode(), max_num_fields=16, strict_parsing=bool(body), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return 400, _NOT_FORM, None
    instance = form.get("instance_id", [""])[0]
    if instance and instance != "N/A":
        match = _INSTANCE.fullmatch(instance)
        if match is None or match["node"] != node_id:
            return 403, _NOT_ITS_INSTANCE, None
    return 204, b"", node_id


def _node(middle: str, client_ip: Callable[[], str], index) -> str | None:
    """The node this requester may phone home for: `middle` is "", "<id>" or "<id>/<token>"."""
    if not middle:  # /cloud-init/phone-home
        entry = index.cloud_by_ip.get(client_ip())
        return None if entry is None else entry.node_id
    node_id, _, token = middle.partition("/")
    entry = index.cloud_by_id.get(node_id)
    if entry is None or "/" in token:
        return None
    if token and entry.token and token.isascii() and compare_digest(entry.token, token):
        return node_id
    if index.cloud_by_ip.get(client_ip()) is entry:
        return node_id
    return None
