"""Finding 8: a refused bulk import must cost little memory.

A 32 MiB body of `[{},{},...]` (11 million tiny items) once grew the admin
worker from ~125 MB to ~790 MB before it was refused for holding more than
10,000 nodes: every item became an object before anyone counted them.  The
count now comes first, so the peak RSS of the real worker process barely moves.
"""

import asyncio
import http.client
import json
from pathlib import Path

import psutil
import pytest

from tests.helpers.tokens import token_for

LIMIT = 32 << 20  # admin_api.http.MAX_BULK_BODY
GROWTH_BOUND = 150 << 20  # the old code grew by ~650 MB for each of these bodies


def _array_body() -> bytes:
    count = (LIMIT - 3) // 3
    return b"[" + b"{}," * count + b"{}]"


def _ndjson_body() -> bytes:
    return b"{}\n" * (LIMIT // 3)


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


@pytest.mark.parametrize(("content_type", "make_body"), [
    ("application/json", _array_body),
    ("application/x-ndjson", _ndjson_body),
])
def test_refused_oversized_import_does_not_inflate_the_worker(admin_server, dsn, content_type, make_body):
    server = admin_server()
    token = asyncio.run(token_for(server.url, dsn))
    body = make_body()
    assert len(body) <= LIMIT
    assert _post(server, token, b"[]", content_type)[0] == 422  # warm up the import route
    before = {p.pid: _peak_rss(p) for p in _workers(server)}

    status, problem = _post(server, token, body, content_type)

    assert status == 422, problem
    assert "10000" in problem["detail"], problem
    growth = {p.pid: _peak_rss(p) - before.get(p.pid, 0) for p in _workers(server)}
    worst = max(growth.values())
    print(f"\n{content_type}: peak RSS growth {worst / 2**20:.0f} MB "
          f"(before {max(before.values()) / 2**20:.0f} MB)")
    assert worst < GROWTH_BOUND, f"peak RSS grew by {worst / 2**20:.0f} MB refusing one import"
