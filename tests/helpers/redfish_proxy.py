"""A misbehaving BMC for tests: a proxy in front of the real sushy-tools emulator that records, delays,
cuts off or rewrites what passes through.

It is a mock of the misbehaviour only: every request still reaches the real
emulator (which acts on it), and every answer is the emulator's, unless a
test asks the proxy to lie about it (`rewrite`), answer it late (`delay_s`)
or drop the connection without an answer once the request is in (`drop`).
`requests` is what reached the BMC, in order, for tests to count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable

import aiohttp
from aiohttp import web

from tests.helpers.ports import free_port


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    body: dict | None


Rewrite = Callable[[str, dict], dict]      # (path, the emulator's JSON answer) -> what the BMC says instead
Rule = Callable[[Seen, int], bool | float]  # (request, how many such requests so far) -> a verdict


class RedfishProxy:
    """`delay_s(seen, n)`: seconds to hold the emulator's answer back; `drop(seen, n)`: close the connection
    instead of answering (after the request reached the emulator); `rewrite(path, body)`: the lie told."""

    def __init__(self, upstream: str, *, delay_s: Rule | None = None, drop: Rule | None = None,
                 rewrite: Rewrite | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s
        self.drop = drop
        self.rewrite = rewrite
        self.requests: list[Seen] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def resets(self) -> list[str]:
        """The ResetType of each ComputerSystem.Reset POST that reached the BMC, in order."""
        return [(s.body or {}).get("ResetType") for s in self.requests
                if s.method == "POST" and s.path.endswith("/Actions/ComputerSystem.Reset")]

    async def start(self) -> RedfishProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = Seen(request.method, request.path, body if isinstance(body, dict) else None)
        self.requests.append(seen)
        nth = sum(1 for s in self.requests if (s.method, s.path) == (seen.method, seen.path))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        assert self._session is not None
        async with self._session.request(request.method, self.upstream + request.path_qs, data=raw or None,
                                         headers=headers) as answer:
            status, payload = answer.status, await answer.read()
            content_type = answer.headers.get("Content-Type", "application/json")
        if self.drop and self.drop(seen, nth):
            # The request is in and acted on; the BMC's answer never comes back.
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=204)
        if self.rewrite and payload and status < 300:
            payload = json.dumps(self.rewrite(request.path, json.loads(payload))).encode()
            content_type = "application/json"
        if self.delay_s and (delay := self.delay_s(seen, nth)):
            await asyncio.sleep(float(delay))
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})
