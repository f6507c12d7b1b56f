"""Ending every token of a subject: on request (POST /auth/v1/token/revoke), and by itself when
what the tokens were issued on changes (an account deleted, disabled, given a new secret or
fewer scopes; a role narrowed; a policy deleted).

A subject revocation refuses the subject's tokens issued at or before it
(core.tokens compares the token's `iat`, in whole seconds).  Written in the
transaction of the change that calls for it, its INSERT notifies
`chamicore_auth` on commit, so every admin process reloads within a second;
the process that wrote it reloads at once (`Authenticator.reload`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable

MAX_WAIT_S = 2.0  # a clock far behind the database's: issue anyway (the token is refused until it catches up)


async def revoke_subjects(conn, subjects: Iterable[str], token_lifetime_s: int) -> None:
    """Revoke every token issued so far to each of `subjects` (call it inside the change's transaction)."""
    subjects = sorted(set(subjects))
    if subjects:
        # Past expires_at no token it could match is still valid: the row may be pruned.
        await conn.execute("INSERT INTO auth.revocations (subject, expires_at) "
                           "SELECT s, now() + make_interval(secs => $2) FROM unnest($1::text[]) AS s",
                           subjects, token_lifetime_s + 60)


async def wait_until_past(conn, subject: str) -> None:
    """Wait, if need be, until a token issued now is later than the subject's last revocation.

    `iat` is in whole seconds and a revocation refuses `iat <= revoked_at`, so a
    token issued in the second of a revocation (a new secret, then a token with
    it at once) would be refused by it.  Waiting for the next second is cheaper
    than a finer `iat`, which outside token readers may not expect.
    """
    revoked_at = await conn.fetchval("SELECT extract(epoch FROM max(revoked_at))::float8 FROM auth.revocations "
                                     "WHERE subject = $1", subject)
    if revoked_at is not None:
        wait = math.floor(revoked_at) + 1 - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, MAX_WAIT_S))
