"""Finding 8: a refused bulk import must cost little memory.

A 32 MiB body of `[{},{},...]` (11 million tiny items) once grew the admin
worker from ~125 MB to ~790 MB before it was refused for holding more than
10,000 nodes: every item became an object before anyone counted them.  The
count now comes first, so the peak RSS of the real worker process barely moves.
The same objects packed into few items (one node's metaData, or thirty nodes
of 1 MiB each) were accepted: one item may now hold what creating that node
alone may send (1 MiB), and all items together 1,000,000 values.
"""

import asyncio
import http.client
import json
from pathlib import Path

import psutil
import pytest

from tests.helpers.tokens import token_for

LIMIT = 32 << 20  # admin_api.http.MAX_BULK_BODY
GROWTH_BOUND = 150 << 20  # the old code grew by ~650 MB refusing 11 million items
# Refused after 1,000,000 values (admin_api.nodes.bulk.MAX_VALUES), which an accepted import may hold too
# (~100 a node); the old code took all 30 MiB of metaData, with a 201.
VALUES_GROWTH_BOUND = 220 << 20


def _array_body() -> bytes:
    count = (LIMIT - 3) // 3
    return b"[" + b"{}," * count + b"{}]"


def _ndjson_body() -> bytes:
    return b"{}\n" * (LIMIT // 3)


def _one_huge_item() -> bytes:
    """One node whose cloud-init metaData holds millions of tiny objects: few items, but just as many objects."""
    head, tail = b'[{"id": "n1", "cloudInit": {"metaData": {"a": [', b"{}]}}}]"
    count = (LIMIT - len(head) - len(tail)) // 3
    return head + b"{}," * count + tail


def _many_big_items() -> bytes:
    """Thirty nodes, each just under the 1 MiB one node may hold, of tiny objects in its metaData."""
    items = [b'{"id": "n%d", "cloudInit": {"metaData": {"a": [' % i + b"{}," * 349_000 + b"{}]}}}"
             for i in range(30)]
    return b"[" + b",".join(items) + b"]"


def _peak_rss(process: psutil.Process) -> int:
    """Peak resident set size (VmHWM) of a process, in bytes."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def _workers(server) -> list[psutil.Process]:
    main = psutil.Process(server.process.pid)
    return [main, *main.children(recursive=True)]


def _post(server, token: str, body: bytes, content_type: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.request("POST", "/hsm/v2/import", body=body,
                           headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(("content_type", "make_body", "bound"), [
    ("application/json", _array_body, GROWTH_BOUND),
    ("application/x-ndjson", _ndjson_body, GROWTH_BOUND),
    ("application/json", _one_huge_item, GROWTH_BOUND),
    ("application/json", _many_big_items, VALUES_GROWTH_BOUND),
])
def test_refused_oversized_import_does_not_inflate_the_worker(admin_server, dsn, content_type, make_body, bound):
    server = admin_server()
    token = asyncio.run(token_for(server.url, dsn))
    body = make_body()
    assert len(body) <= LIMIT
    assert _post(server, token, b"[]", content_type)[0] == 422  # warm up the import route
    before = {p.pid: _peak_rss(p) for p in _workers(server)}

    status, problem = _post(server, token, body, content_type)

    assert status == 422, problem
    assert "10000" in problem["detail"] or "bytes" in problem["errors"][0]["detail"] or \
        "values" in problem["detail"], problem
    growth = {p.pid: _peak_rss(p) - before.get(p.pid, 0) for p in _workers(server)}
    worst = max(growth.values())
    print(f"\n{content_type}: peak RSS growth {worst / 2**20:.0f} MB "
          f"(before {max(before.values()) / 2**20:.0f} MB)")
    assert worst < bound, f"peak RSS grew by {worst / 2**20:.0f} MB refusing one import"
