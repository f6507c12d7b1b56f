"""Cloud-init: payloads by scope, with a live user-data preview and conflict handling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from admin_api.console.scoped import Entries, Field, node_query
from admin_api.console.web import Pages, api
from admin_api.inprocess import NativeError, segment

pages = Pages()
DOCUMENTS = ("user-data", "meta-data", "vendor-data")


async def documents_preview(request: Request, node: str) -> dict[str, Any]:
    """What the boot path serves the node at its seed URL (through the REST impersonation route, which
    asks it as a preview): user-data merged across its scopes (MIME multipart for several groups)."""
    native = api(request)
    kind, value = node_query(node)
    try:
        if kind == "mac":
            found = await native.json("GET", "/hsm/v2/Inventory/EthernetInterfaces", query={"mac": value, "limit": 1})
            if not found["items"]:
                return {"error": f"no interface has the MAC {value}", "component": None, "documents": {}}
            value = found["items"][0]["spec"]["componentId"]
        documents = {}
        for document in DOCUMENTS:
            answer = await native.request("GET", f"/openchami/cloud-init/admin/impersonation/{segment(value)}/"
                                                 f"{document}")
            documents[document] = answer.body.decode(errors="replace")
    except NativeError as exc:
        return {"error": exc.problem.detail or exc.problem.title, "component": value, "documents": {}}
    return {"error": None, "component": value, "documents": documents}


Entries(pages, ui="/ui/cloud-init", rest="/cloud-init/payloads", noun="cloud-init payload", title="Cloud-init",
        scope_fields=("componentId", "group", "role"), read_scope="read:cloudinit", write_scope="write:cloudinit",
        fields=(Field("userData", "User-data", kind="textarea", blank=None,
                      hint="#cloud-config, a script or a MIME multipart; empty: a broader scope's user-data applies"),
                Field("metaData", "Meta-data", kind="json", hint="a JSON object of extra meta-data keys; may be empty"),
                Field("vendorData", "Vendor-data", kind="textarea", blank=None,
                      hint="empty: a broader scope's vendor-data applies")),
        preview_template="cloudinit_preview.html", preview=documents_preview)
