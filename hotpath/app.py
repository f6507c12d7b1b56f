"""The boot-path application: raw RSGI and ASGI faces over one compiled dispatcher.

No framework: a request is read from the scope, dispatched against the
in-memory index, and answered with prebuilt bytes.  Run it with granian
(`chamicore serve boot`), RSGI by default, ASGI when asked:

    granian --interface rsgi --factory hotpath.app:create_app
    granian --interface asgi --factory hotpath.app:create_app
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable
from time import perf_counter

import msgspec
from prometheus_client import CollectorRegistry, generate_latest

from core import tracing
from core.config import Config, in_networks, load_config
from core.logs import configure as configure_logs
from core.problems import problem_bytes
from core.signing import load_signer
from hotpath import phonehome
from hotpath._activity import NO_STAGE
from hotpath._dispatch import (
    CT_EFI,
    CT_JSON,
    CT_PROBLEM,
    CT_SIGNATURE,
    CT_TEXT,
    EP_BOOTSCRIPT,
    EP_CLOUD_INIT,
    EP_FIRST_STAGE,
    EP_OTHER,
    OUT_BAD_REQUEST,
    OUT_NEEDS_CLIENT_IP,
    OUT_NOT_FOUND,
    OUT_OK,
    OUT_WAIT,
    Dispatcher,
)
from hotpath.answers import AnswerBuilder
from hotpath.efi import load_programs
from hotpath.feed import ChangeFeed, FeedState
from hotpath.index import Index
from hotpath.metrics import PUBLISH_S, BootCollector, BootMetrics
from hotpath.telemetry import (
    CLOUD_INIT,
    IPXE,
    KERNEL_BOOTED,
    READY,
    SCRIPT,
    BootTelemetry,
    client_host,
)

log = logging.getLogger("chamicore.hotpath")

_CT_ONLY_GET = 100  # a problem answer that also says which methods are allowed
_CT_LOADING = 101  # a problem answer that also says when to ask again
_CONTENT_TYPES = {
    CT_TEXT: "text/plain; charset=utf-8",
    CT_PROBLEM: "application/problem+json",
    CT_JSON: "application/json",
    CT_SIGNATURE: "application/pkcs7-signature",
    CT_EFI: "application/efi",
    _CT_ONLY_GET: "application/problem+json",
    _CT_LOADING: "application/problem+json",
}
# Every header but Content-Length, made once per kind of answer, for each interface.
_RSGI_HEADERS = {ct: [("content-type", value)] for ct, value in _CONTENT_TYPES.items()}
_RSGI_HEADERS[_CT_ONLY_GET].append(("allow", "GET, HEAD"))
# iPXE waits Retry-After seconds and asks again on a 503; nginx (proxy_next_upstream http_503) asks another replica.
LOADING_RETRY_AFTER_S = 1
_RSGI_HEADERS[_CT_LOADING].append(("retry-after", str(LOADING_RETRY_AFTER_S)))
_ASGI_HEADERS = {ct: [(k.encode(), v.encode()) for k, v in headers] for ct, headers in _RSGI_HEADERS.items()}
_SERVICE_PATHS = frozenset(("/health", "/readiness", "/metrics"))
# `chamicore bootscript` previews a node's answer with this header: answered, not counted as the node asking.
PREVIEW_HEADER = "x-chamicore-preview"
PREVIEW_HEADER_BYTES = PREVIEW_HEADER.encode()
_ONLY_GET = problem_bytes(405, "the boot path only answers GET")
_METRICS_OFF = problem_bytes(404, "this boot path does not count its requests (CHAMICORE_METRICS=false)")
_LOADING = problem_bytes(503, "this boot path is still loading its nodes; ask again shortly")


YOUNG_COLLECTION_EVERY = 20_000  # container allocations between two young collections of the cyclic collector


class BootApp:
    """One worker's boot path: index, change feed, telemetry, metrics."""

    def __init__(self, config: Config, tls: bool = False) -> None:
        if not config.database_url:
            raise ValueError("the boot path needs CHAMICORE_DATABASE_URL (chamicore up sets it)")
        self.config = config
        # The HTTPS listener (tls) serves the same answers, its chain and seed URLs in https.
        # Their base URL is the configured one, else from the request's Host; without a Host
        # header (HTTP/1.0), from the listen address.
        scheme = "https" if tls else "http"
        listen = config.boot_tls_listen if tls else config.boot_listen
        if listen is None:
            raise ValueError("the boot path's HTTPS listener needs CHAMICORE_BOOT_TLS_LISTEN")
        base_url = config.boot_tls_url if tls else config.boot_url
        self.dispatcher = Dispatcher(Index(), base_url, listen.local(scheme), config.retry_base_s,
                                     config.retry_max_s, config.unknown_retry_s, scheme + "://",
                                     load_programs(config.ipxe_dir))
        builder = AnswerBuilder(base_url, config.retry_base_s, config.retry_max_s)
        # Scripts signed for iPXE's imgverify (CHAMICORE_BOOT_SIGNING_*): the key and certificate are checked
        # here, at start (a ConfigError before anything is served), and sign each answer when it is rendered.
        builder.signer = self.dispatcher.signer = load_signer(config)
        self.feed = ChangeFeed(config.database_url, builder, self._publish, self._current_index,
                               coalesce_s=config.feed_coalesce_ms / 1000, check_interval_s=config.feed_check_s)
        self.telemetry = BootTelemetry(config.database_url, config.telemetry_flush_s,
                                       config.telemetry_node_interval_s, config.boot_stages_flush_s,
                                       known=self._served_node_ids)
        self.stages = config.boot_stages
        if config.phone_home:  # the same URL from either listener: a node's user-data (and instance-id) is one
            builder.phone_home_url = f"{config.boot_url}{phonehome.PATH}"
        self.metrics = BootMetrics()
        self.count_requests = config.metrics
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BootCollector(self.metrics, self._refresh_metrics))
        self._publisher: asyncio.Task | None = None
        self.trusted_proxies = config.trusted_proxies
        self.started_at = time.time()
        # Until the first full load, an empty index would tell known nodes to wait (or 404 their cloud-init):
        # a loading worker answers boot requests 503 + Retry-After instead, so that nothing incomplete is served.
        self.loading = True

    # -- index plumbing ---------------------------------------------------

    def _publish(self, index: Index) -> None:
        self.dispatcher.index = index  # one reference swap: requests see old or new, never half
        self.loading = False  # only a full load publishes: this index holds every node

    def _current_index(self) -> Index:
        return self.dispatcher.index

    def _served_node_ids(self) -> tuple[dict, dict] | None:
        """The node ids this worker answers for (boot and cloud-init), None until its first full load."""
        index = self.dispatcher.index
        return None if self.loading else (index.by_id, index.cloud_by_id)

    # -- lifecycle --------------------------------------------------------

    async def startup(self) -> None:
        # A request leaves a few short-lived containers that reference counting frees; at the default threshold
        # (700) the cyclic collector still ran a young collection every few hundred requests and took 7-8% of the
        # worker's CPU in a wrk storm over 10k nodes (gc.callbacks).  The index is out of its reach (gc.freeze,
        # feed.py), and what one pass collects stays a few MB at this threshold.
        gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)
        self.feed.start()
        self.telemetry.start()
        # Several workers (`chamicore serve boot` made the directory): each publishes for the others' scrapes.
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory and self.count_requests:
            self.metrics.share(directory)
            self._publisher = asyncio.get_running_loop().create_task(self._publish_metrics(),
                                                                     name="chamicore-boot-metrics")

    async def shutdown(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            try:
                await self._publisher
            except asyncio.CancelledError:
                pass
        await self.feed.stop()
        await self.telemetry.stop()
        tracing.shutdown()
        self._refresh_metrics()
        self.metrics.publish(live=False)

    async def _publish_metrics(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_S)
            try:
                self._refresh_metrics()
                self.metrics.publish()
            except Exception:  # the next tick tries again: the siblings' scrapes must not lose this worker
                log.exception("metrics: could not publish this worker's figures")

    # -- RSGI -------------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.shutdown())

    async def __rsgi__(self, scope, protocol) -> None:
        started = perf_counter()
        headers = scope.headers
        if scope.method == "POST" and phonehome.is_phone_home(scope.path):
            if self.loading:  # as every boot request: ask again shortly (cloud-init's phone_home tries again)
                protocol.response_bytes(503, _RSGI_HEADERS[_CT_LOADING], _LOADING)
                return
            status, body, node_id = await phonehome.answer(
                scope.path, headers.get, lambda: self.client_ip(scope.client, headers.get("x-forwarded-for")),
                protocol, self.dispatcher.index)
            protocol.response_bytes(status, _RSGI_HEADERS[CT_PROBLEM] if body else [], body)
            self.record_ready(started, node_id)
            return
        status, ct, body, node_id, endpoint, outcome = self.answer(
            scope.method, scope.path, scope.query_string, headers.get, scope.authority or "", scope.client)
        protocol.response_bytes(status, _RSGI_HEADERS[ct], body)
        self.record(started, node_id, endpoint, outcome, scope.client, headers.get(PREVIEW_HEADER) is not None,
                    scope.path, headers.get)

    # -- ASGI -------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._asgi_http(scope, receive, send)
        elif kind == "lifespan":
            await self._asgi_lifespan(receive, send)

    async def _asgi_http(self, scope, receive, send) -> None:
        started = perf_counter()
        raw = scope["headers"]

        def header(name: str) -> str | None:
            wanted = name.encode()
            return next((v.decode("latin-1") for k, v in raw if k == wanted), None)

        client = scope.get("client") or ("", 0)
        peer = f"{client[0]}:{client[1]}"
        if scope["method"] == "POST" and phonehome.is_phone_home(scope["path"]):
            if self.loading:
                await send({"type": "http.response.start", "status": 503, "headers": [
                    *_ASGI_HEADERS[_CT_LOADING], (b"content-length", str(len(_LOADING)).encode())]})
                await send({"type": "http.response.body", "body": _LOADING})
                return

            async def read_body() -> bytes:
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > phonehome.MAX_BODY:  # more than its Content-Length said: stop reading
                        break
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                return b"".join(chunks)

            status, body, node_id = await phonehome.answer(
                scope["path"], header, lambda: self.client_ip(peer, header("x-forwarded-for")), read_body,
                self.dispatcher.index)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*_ASGI_HEADERS[CT_PROBLEM], (b"content-length", str(len(body)).encode())]
                        if body else []})
            await send({"type": "http.response.body", "body": body})
            self.record_ready(started, node_id)
            return
        status, ct, body, node_id, endpoint, outcome = self.answer(
            scope["method"], scope["path"], scope["query_string"].decode("latin-1"), header, "", peer)
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [*_ASGI_HEADERS[ct], (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
        self.record(started, node_id, endpoint, outcome, peer, any(k == PREVIEW_HEADER_BYTES for k, _ in raw),
                    scope["path"], header)

    async def _asgi_lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report, then let the server exit
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- shared by both interfaces ----------------------------------------

    def answer(self, method: str, path: str, query: str, header: Callable[[str], str | None], authority: str,
               client: str) -> tuple[int, int, bytes, str | None, int | None, int]:
        """One request: (status, content type, body, node id, endpoint, outcome).

        `header(name)` reads a request header (lower-case name); it is asked only
        for what the answer needs (Host when no CHAMICORE_BOOT_URL is set,
        X-Forwarded-For for cloud-init by address).  Service paths have no
        endpoint: they are not counted as boot requests.
        """
        if method not in ("GET", "HEAD"):
            return 405, _CT_ONLY_GET, _ONLY_GET, None, EP_OTHER, OUT_BAD_REQUEST
        if path in _SERVICE_PATHS:
            status, ct, body = self.service(path)
            return status, ct, body, None, None, OUT_BAD_REQUEST
        if self.loading:
            return 503, _CT_LOADING, _LOADING, None, EP_OTHER, OUT_WAIT
        dispatcher = self.dispatcher
        host = "" if dispatcher.base_url is not None else (header("host") or authority)
        answer = dispatcher.dispatch(path, query, host)
        if answer[5] == OUT_NEEDS_CLIENT_IP:
            answer = dispatcher.cloud_init_by_ip(self.client_ip(client, header("x-forwarded-for")), path)
        return answer

    def record(self, started: float, node_id: str | None, endpoint: int | None, outcome: int, client: str,
               preview: bool, path: str = "", header: Callable[[str], str | None] | None = None) -> None:
        """Telemetry and the boot stage for a node that asked (not for a preview), metrics for every boot
        request.  The stages the boot path sees: the first stage (by the requester's address: boot.ipxe
        names no node), the script, meta-data (the first cloud-init request of a boot: the kernel, which is
        not served here, has booted), user-data or vendor-data; phone-home is record_ready's."""
        if node_id is not None and endpoint is not None and not preview:
            stage = NO_STAGE
            if self.stages and outcome == OUT_OK:
                if endpoint == EP_BOOTSCRIPT:
                    stage = SCRIPT
                elif endpoint == EP_CLOUD_INIT:
                    stage = KERNEL_BOOTED if path.endswith("meta-data") else CLOUD_INIT
            self.telemetry.record(node_id, endpoint, time.time(), client, stage)
        elif endpoint == EP_FIRST_STAGE and self.stages and not preview and header is not None:
            entry = self.dispatcher.index.cloud_by_ip.get(self.client_ip(client, header("x-forwarded-for")))
            if entry is not None:
                self.telemetry.record_stage(entry.node_id, IPXE, time.time())
        if endpoint is not None and self.count_requests:
            self.metrics.observe(endpoint, outcome, perf_counter() - started)

    def record_ready(self, started: float, node_id: str | None) -> None:
        """A phone-home: the node (None: refused) is ready.  Counted with the cloud-init requests."""
        if node_id is not None and self.stages:
            self.telemetry.record_stage(node_id, READY, time.time())
        if self.count_requests:
            self.metrics.observe(EP_CLOUD_INIT, OUT_OK if node_id is not None else OUT_NOT_FOUND,
                                 perf_counter() - started)

    def client_ip(self, client: str, forwarded_for: str | None) -> str:
        """The requester's address; X-Forwarded-For only when the peer is a trusted proxy."""
        peer = client_host(client) or ""
        if not forwarded_for or not self.trusted_proxies or not self._trusted(peer):
            return peer
        # Walk right to left: the first hop that is not one of our proxies is the node.
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return client_host(hop + ":0") or peer
        return client_host(hops[0] + ":0") or peer if hops else peer

    def _trusted(self, address: str) -> bool:
        return in_networks(address, self.trusted_proxies)

    def service(self, path: str) -> tuple[int, int, bytes]:
        index = self.dispatcher.index
        feed = self.feed
        if path == "/health":
            return 200, CT_JSON, msgspec.json.encode({"status": "ok", "service": "boot"})
        if path == "/readiness":
            ready = feed.ready.is_set()
            body = {
                "status": "ready" if ready else "loading",
                "nodes": len(index),
                "macs": index.mac_count,
                # This worker's, since it started; absent when it does not count (CHAMICORE_METRICS=false).
                **({"requests": self.metrics.totals()} if self.count_requests else {}),
                "feed": {
                    "state": feed.state.value,
                    "lastError": feed.last_error,
                    "fullReloads": feed.full_reloads,
                    "partialUpdates": feed.partial_updates,
                    "notifications": feed.notifications,
                    "lastLagSeconds": feed.last_lag_s,
                    "lastFullReloadSeconds": feed.last_full_reload_s,
                },
            }
            return (200 if ready else 503), CT_JSON, msgspec.json.encode(body)
        if not self.count_requests:
            return 404, CT_PROBLEM, _METRICS_OFF
        return 200, CT_TEXT, generate_latest(self.registry)

    def _refresh_metrics(self) -> None:
        """This worker's gauges and totals, in the order of hotpath.metrics GAUGES and COUNTERS."""
        index, feed, telemetry = self.dispatcher.index, self.feed, self.telemetry
        self.metrics.update(
            (len(index), index.mac_count, round(time.time() - index.updated_at, 3), feed.last_full_reload_s or 0.0,
             1.0 if feed.state == FeedState.LIVE else 0.0, feed.last_lag_s or 0.0, telemetry.pending,
             telemetry.last_flush_s),
            (feed.full_reloads, feed.notifications, telemetry.flushed_rows))


def create_app() -> BootApp:
    """Factory for granian (`--factory`) and other servers: reads CHAMICORE_* settings."""
    config = load_config()
    configure_logs(config, "boot")
    tracing.configure(config, "boot")  # the feed's batches only: boot requests are never traced
    return BootApp(config)


def create_tls_app() -> BootApp:
    """Factory of the HTTPS listener (CHAMICORE_BOOT_TLS_LISTEN): granian terminates TLS, answers are the same."""
    config = load_config()
    configure_logs(config, "boot")
    tracing.configure(config, "boot")
    return BootApp(config, tls=True)

