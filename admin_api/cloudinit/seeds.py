"""A node's cloud-init seed token, and its rotation.

The token is the secret part of the seed URL in the node's boot script,
`<boot URL>/cloud-init/<id>/<token>/`, with which the node reads its own
cloud-init by id from anywhere (who may read what: hotpath/_dispatch.pyx).
The API never shows it: the script the node gets for its MAC carries it
(`chamicore bootscript <MAC>` previews that).  Rotating draws a new one; the
boot path renders it within milliseconds, and every URL holding the old one
stops working (a node that is up keeps reading its data from its own address).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import problem
from admin_api.resources import path_key
from admin_api.routing import Router
from core import inventory

router = Router("cloud-init-seeds")


@router.post("/hsm/v2/State/Components/{id}/cloud-init-seed/rotate", scope="write:cloudinit", status=204,
             summary="Give a node a new cloud-init seed token (URLs with the old one stop working)")
async def rotate_seed(request: Request) -> Response:
    component_id = path_key(request, "component")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if not await inventory.rotate_seed_token(conn, component_id, inventory.ADMIN):
            raise problem(404, f"no component {component_id!r}")
    return Response(status_code=204)
