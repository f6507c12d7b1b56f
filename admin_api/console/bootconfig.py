"""Boot configuration: boot parameters by scope, with a live script preview and conflict handling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from admin_api.console.scoped import Entries, Field, component_of
from admin_api.console.web import Pages, api
from admin_api.inprocess import NativeError, segment
from core.problems import ProblemError

pages = Pages()


async def script_preview(request: Request, node: str) -> dict[str, Any]:
    """The entries that apply to the node, the one that wins, and the iPXE script the boot path sends it
    (REST /boot/v1/effective: asked of the boot path as a preview, not counted as the node booting)."""
    native = api(request)
    try:
        component, mac = await component_of(request, node)
        effective = await native.json("GET", f"/boot/v1/effective/{segment(component)}")
        script = await native.request("GET", f"/boot/v1/effective/{segment(component)}/script", query={"mac": mac})
    except (NativeError, ProblemError) as exc:
        return {"error": exc.problem.detail or exc.problem.title}
    winner = effective["winner"] if mac is None else \
        next((w["winner"] for w in effective["byMac"] if w["mac"] == mac), None)
    return {"error": None, "component": component, "mac": mac, "reason": effective["reason"], "winner": winner,
            "candidates": effective["candidates"], "text": script.body.decode(errors="replace")}


Entries(pages, ui="/ui/boot", rest="/boot/v1/bootparams", noun="boot parameters", title="Boot configuration",
        scope_fields=("mac", "componentId", "nid", "group", "role"), read_scope="read:bss", write_scope="write:bss",
        fields=(Field("kernel", "Kernel URL", hint="http, https or tftp"),
                Field("initrd", "Initrd URL", hint="http, https or tftp; may be empty"),
                Field("cmdline", "Kernel command line", kind="textarea",
                      hint="node variables such as {{id}}, {{nid}}, {{cloud_init_url}} are filled in per node")),
        preview_template="boot_preview.html", preview=script_preview)
