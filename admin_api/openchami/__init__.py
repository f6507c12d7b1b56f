"""The OpenCHAMI-compatible face: SMD, BSS, cloud-init and PCS as OpenCHAMI's clients speak them,
served under /openchami (compat.PREFIX) over the same data and write path as the native API."""

from admin_api.openchami import bss, cloudinit, pcs, smd, smd_endpoints, smd_groups
from admin_api.routing import Router

ROUTERS: list[Router] = [*smd.routers, *smd_endpoints.routers, *smd_groups.routers, *bss.routers,
                         *cloudinit.routers, *pcs.routers]
