"""/ui/account: who you are logged in as, what your roles let you do, and your open sessions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import Pages, render, session_of

pages = Pages()


@pages.get("/ui/account")
async def account(request: Request) -> Response:
    session = session_of(request)
    async with request.app.state.pool.acquire() as conn:  # one's own sessions: no scope needed to see them
        rows = await conn.fetch("SELECT created_at, last_seen, expires_at, host(source_ip) AS source_ip, user_agent "
                                "FROM auth.sessions WHERE username = $1 AND expires_at > now() "
                                "ORDER BY created_at DESC", session.username)
    return render(request, "account.html", sessions=rows, scopes=sorted(session.scopes))
