"""Boot configuration: boot parameters by scope, with a live script preview and conflict handling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from admin_api import bootpath
from admin_api.console.scoped import Entries, Field, node_query
from admin_api.console.web import Pages
from core.problems import ProblemError

pages = Pages()


async def script_preview(request: Request, node: str) -> dict[str, Any]:
    """The iPXE script the boot path sends the node, asked as a preview (not counted as the node booting)."""
    asked = node_query(node)
    try:
        answer = await bootpath.fetch(request.app.state.config, "/boot/v1/bootscript", [asked], preview=True)
    except ProblemError as exc:
        return {"error": exc.problem.detail, "text": "", "asked": asked}
    text = answer.body.decode(errors="replace")
    if answer.status >= 400:
        return {"error": f"the boot path answered {answer.status}: {text[:500]}", "text": "", "asked": asked}
    return {"error": None, "text": text, "asked": asked}


Entries(pages, ui="/ui/boot", rest="/boot/v1/bootparams", noun="boot parameters", title="Boot configuration",
        scope_fields=("mac", "componentId", "nid", "group", "role"), read_scope="read:bss", write_scope="write:bss",
        fields=(Field("kernel", "Kernel URL", hint="http, https or tftp"),
                Field("initrd", "Initrd URL", hint="http, https or tftp; may be empty"),
                Field("cmdline", "Kernel command line", kind="textarea",
                      hint="node variables such as {{id}}, {{nid}}, {{cloud_init_url}} are filled in per node")),
        preview_template="boot_preview.html", preview=script_preview)
