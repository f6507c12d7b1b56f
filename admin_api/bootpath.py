"""Asking the boot path what it answers a node, from the admin API.

One renderer: a preview shows the bytes the boot path itself sends, never a
second rendering.  The admin API does not import hotpath/ (they meet only in
the database), so it asks over HTTP, with the boot path's preview header so
that the ask is not counted in boot telemetry as the node booting.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import aiohttp

from core.config import Config
from core.problems import ProblemError

# A node's seed URL in its script: <boot URL>/cloud-init/<id>/<token>/ (core/migrations/0011_cloud_init_token.sql).
_SEED_TOKEN = re.compile(rb"(/cloud-init/[^/\s]+/)[0-9a-f]{32}/")
SEED_SCOPE = "read:cloudinit"

# hotpath/app.py PREVIEW_HEADER: answered as for the node, not recorded as the node asking.
PREVIEW_HEADER = "X-Chamicore-Preview"
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclasses.dataclass(frozen=True, slots=True)
class BootAnswer:
    status: int
    content_type: str
    body: bytes


def base_url(config: Config) -> str:
    """Where this admin API reaches the boot path: CHAMICORE_BOOT_URL, else its listen address."""
    return (config.node_boot_url or config.boot_listen.local_url).rstrip("/")


async def fetch(config: Config, path: str, query: Sequence[tuple[str, str]] | Mapping[str, str], *,
                preview: bool = True, headers: Mapping[str, str] | None = None) -> BootAnswer:
    """GET `path` from the boot path; 503 naming the URL and the fix when it does not answer."""
    base = base_url(config)
    sent = dict(headers or {})
    if preview:
        sent[PREVIEW_HEADER] = "1"
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.get(f"{base}{path}", params=query, headers=sent, allow_redirects=False) as answer:
            return BootAnswer(answer.status, answer.headers.get("Content-Type", "text/plain; charset=utf-8"),
                              await answer.read())
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ProblemError(503, f"the boot path at {base} did not answer ({type(exc).__name__}: {exc}); start it "
                                "(chamicore serve boot), or set CHAMICORE_BOOT_URL to the URL it serves at") from None


def hide_seed_tokens(script: bytes) -> bytes:
    """A previewed script without the node's cloud-init seed token, for a caller who may not read cloud-init
    data: the token is the key to the node's documents, so seeing it would be reading them."""
    return _SEED_TOKEN.sub(rb"\1<seed-token-hidden:needs-read:cloudinit>/", script)
