"""Where a BMC credential may be sent, and who may send it somewhere new.

A discovery target or a Redfish endpoint binds a credential to addresses:
the scanner and the power engine send the secret to each of them.  Sending
a secret to an address of one's choosing is reading it, so binding a
credential to an address it is not bound to yet needs `read:credentials`,
the scope that reads secrets, whichever route does it (`check_binding`).

Why not an allow-list of addresses kept with the credential instead: it
would be set with `write:credentials`, and the operator role holds that
scope (to store and rotate secrets it must not read), so the list would not
stop the very role this guards against; it would also be one more thing to
keep in step with the targets.  What the credential is bound to already
stays an operator's to work with: a target's schedule or description, an
endpoint's systems, a second target inside the same range, and discovery
registering the BMCs it found at a target's hosts.

A binding is a base URL and its TLS choice: the same host over http (a
different URL), or with certificate checks turned off (`insecure`) where
they were on, is a new binding.  A switch's community or v3 keys are bound
the same way, to its `snmp://host:port`.
"""

from __future__ import annotations

from starlette.requests import Request

from admin_api.auth.guard import missing_scopes, require_scopes
from core.discovery import BadAddress, endpoint_url, scan_hosts

READ = "read:credentials"


async def bindings(conn, credential_id: str) -> set[tuple[str, bool]]:
    """(base URL, insecure) pairs the credential is sent to today, by targets and endpoints."""
    bound: set[tuple[str, bool]] = set()
    for row in await conn.fetch("SELECT driver, address, insecure FROM discovery.targets WHERE credential_id = $1 "
                                "AND driver IN ('redfish', 'snmp', 'ipmi')", credential_id):
        try:
            bound.update((url, _insecure(url, row["insecure"])) for url in scan_hosts(row))
        except BadAddress:  # written before a rule tightened: it names nothing a scan can reach
            continue
    for row in await conn.fetch("SELECT address, insecure FROM smd.redfish_endpoints WHERE credential_id = $1",
                                credential_id):
        try:
            url = endpoint_url(row["address"])
        except BadAddress:
            continue
        bound.add((url, _insecure(url, row["insecure"])))
    return bound


async def check_binding(request: Request, conn, credential_id: str | None, urls: list[str], insecure: bool,
                        what: str) -> None:
    """403 unless the token reads credentials or the credential already goes to each of `urls` this way.

    Call it with the resource's state after the write, before writing it (so
    the row being changed still counts with its current binding).
    """
    if credential_id is None or not urls or not missing_scopes(request, (READ,)):
        return
    bound = await bindings(conn, credential_id)
    new = [url for url in urls if not _covered(bound, url, _insecure(url, insecure))]
    if new:
        more = f" and {len(new) - 1} more" if len(new) > 1 else ""
        how = " without checking its certificate" if _insecure(new[0], insecure) else ""
        require_scopes(request, (READ,), f"{what} would send credential {credential_id!r} to {new[0]}{more}{how}, "
                                         "where it is not sent today")


def _insecure(url: str, insecure: bool) -> bool:
    return insecure and url.startswith("https://")  # plain http has no certificate to check


def _covered(bound: set[tuple[str, bool]], url: str, insecure: bool) -> bool:
    return (url, True) in bound or (not insecure and (url, False) in bound)
