"""Dry runs: the same transaction as the real change, rolled back at its end.

A dry run does every check and every write the real request does, inside one
transaction, so that it meets exactly the refusals (422, 409, 403) the real
one would; what it reports is what the real one would change.  Asked for with
`?dryRun=true` (provision, decommission, import) or `"dryRun": true` in the
body (power transitions).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request

from admin_api.http import query_flag
from admin_api.routing import Param

PARAM = Param("dryRun", "true: report the changes, make none")


def requested(request: Request) -> bool:
    return query_flag(request, "dryRun")


@contextlib.asynccontextmanager
async def transaction(conn, dry_run: bool) -> AsyncIterator[None]:
    """A transaction that commits when the block ends normally, unless `dry_run`: then it rolls back."""
    tx = conn.transaction()
    await tx.start()
    try:
        yield
    except BaseException:
        await tx.rollback()
        raise
    if dry_run:
        await tx.rollback()
    else:
        await tx.commit()
