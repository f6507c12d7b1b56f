"""Bearer tokens for tests: a service account made on the spot, then the client-credentials grant."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import httpx

from core import db


async def token_for(admin: httpx.AsyncClient | str, dsn: str, client_id: str = "test-admin",
                    roles: Sequence[str] = ("admin",)) -> str:
    """A token for a new service account `client_id` holding `roles`.

    `admin` is a client of the admin API (the in-process app) or the URL of a running admin server;
    from synchronous code, `asyncio.run(token_for(server.url, dsn))`.
    """
    # Imported here so that a broken admin API fails its own tests only.
    from admin_api.auth.accounts import create_account

    conn = await db.connect(dsn)
    try:
        secret = await create_account(conn, client_id, list(roles))
    finally:
        await conn.close()
    async with contextlib.AsyncExitStack() as stack:
        client = admin if isinstance(admin, httpx.AsyncClient) else \
            await stack.enter_async_context(httpx.AsyncClient(base_url=admin, timeout=10))
        response = await client.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                             "client_id": client_id, "client_secret": secret})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
