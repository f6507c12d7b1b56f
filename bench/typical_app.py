"""The baseline the boot path is measured against: a typical Python service.

Starlette on uvicorn, one asyncpg pool, one SQL query per request, the
script formatted per request.  This is how such a service is usually
written; it is not part of Chamicore.

    CHAMICORE_DATABASE_URL=... uvicorn --factory bench.typical_app:create_app --port 8000
"""

from __future__ import annotations

import contextlib
import os

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from core.mac import try_normalize_mac

BOOT_QUERY = """
SELECT c.id, c.nid, c.arch, b.kernel, b.initrd, b.cmdline
FROM smd.ethernet_interfaces i
JOIN smd.components c ON c.id = i.component_id
LEFT JOIN LATERAL (
    SELECT kernel, initrd, cmdline FROM bss.boot_params p
    WHERE p.mac = i.mac OR p.component_id = c.id OR p.role = c.role
       OR p.group_name IN (SELECT group_name FROM smd.group_members m WHERE m.component_id = c.id)
       OR (p.mac IS NULL AND p.component_id IS NULL AND p.group_name IS NULL AND p.role IS NULL)
    ORDER BY (p.mac IS NOT NULL) DESC, (p.component_id IS NOT NULL) DESC, (p.group_name IS NOT NULL) DESC,
             (p.role IS NOT NULL) DESC
    LIMIT 1
) b ON true
WHERE i.mac = $1
"""

PAYLOAD_QUERY = """
SELECT p.user_data, p.meta_data, p.vendor_data FROM smd.components c
JOIN cloudinit.payloads p ON p.component_id = c.id OR p.role = c.role OR p.component_id IS NULL
WHERE c.id = $1 ORDER BY (p.component_id IS NOT NULL) DESC LIMIT 1
"""


def create_app() -> Starlette:
    pool: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        pool["db"] = await asyncpg.create_pool(os.environ["CHAMICORE_DATABASE_URL"], min_size=4, max_size=16)
        yield
        await pool["db"].close()

    async def bootscript(request: Request):
        mac = try_normalize_mac(request.query_params.get("mac", ""))
        if mac is None:
            return JSONResponse({"detail": "bad mac"}, status_code=400)
        row = await pool["db"].fetchrow(BOOT_QUERY, mac)
        host = request.headers.get("host", "localhost")
        if row is None or row["kernel"] is None:
            return PlainTextResponse(f"#!ipxe\nsleep 10\nchain http://{host}/boot/v1/bootscript?mac={mac}\n")
        cmdline = row["cmdline"].replace("{{nid}}", str(row["nid"])).replace("{{hostname}}", row["id"])
        return PlainTextResponse(
            f"#!ipxe\nkernel --name kernel {row['kernel']} {cmdline} initrd=initrd "
            f"BOOTIF=01-{mac.replace(':', '-')} ds=nocloud-net;s=http://{host}/cloud-init/{row['id']}/ || goto retry\n"
            f"initrd --name initrd {row['initrd']} || goto retry\nboot || goto retry\n:retry\nsleep 2\n"
            f"chain http://{host}/boot/v1/bootscript?mac={mac}&retry=1\n")

    async def cloud_init(request: Request):
        row = await pool["db"].fetchrow(PAYLOAD_QUERY, request.path_params["node"])
        if row is None:
            return JSONResponse({"detail": "unknown node"}, status_code=404)
        document = request.path_params["document"]
        if document == "meta-data":
            return PlainTextResponse(f"instance-id: {request.path_params['node']}\n{row['meta_data']}")
        return PlainTextResponse(row["user_data" if document == "user-data" else "vendor_data"] or "")

    return Starlette(
        routes=[Route("/boot/v1/bootscript", bootscript), Route("/cloud-init/{node}/{document}", cloud_init),
                # the seed URL the boot path's scripts carry (its token is not checked here)
                Route("/cloud-init/{node}/{token}/{document}", cloud_init)],
        lifespan=lifespan,
    )
