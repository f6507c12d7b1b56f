"""Cloud-init: payloads by scope, with a live user-data preview and conflict handling."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from admin_api.console.scoped import Entries, Field, component_of
from admin_api.console.web import Pages, api
from admin_api.inprocess import NativeError, segment
from core.problems import ProblemError

pages = Pages()
DOCUMENTS = ("user-data", "meta-data", "vendor-data")


async def documents_preview(request: Request, node: str) -> dict[str, Any]:
    """The payloads that apply to the node and what each gives it (REST /cloud-init/effective), and the
    documents the boot path serves at its seed URL (the REST impersonation route, asked as a preview):
    user-data from several groups comes as MIME multipart."""
    native = api(request)
    try:
        component, _mac = await component_of(request, node)
        effective = await native.json("GET", f"/cloud-init/effective/{segment(component)}")
        documents = {}
        for document in DOCUMENTS:
            answer = await native.request("GET", f"/openchami/cloud-init/admin/impersonation/{segment(component)}/"
                                                 f"{document}")
            documents[document] = answer.body.decode(errors="replace")
    except (NativeError, ProblemError) as exc:
        return {"error": exc.problem.detail or exc.problem.title}
    return {"error": None, "component": component, "candidates": effective["candidates"], "documents": documents}


Entries(pages, ui="/ui/cloud-init", rest="/cloud-init/payloads", noun="cloud-init payload", title="Cloud-init",
        scope_fields=("componentId", "group", "role"), read_scope="read:cloudinit", write_scope="write:cloudinit",
        fields=(Field("userData", "User-data", kind="textarea", blank=None,
                      hint="#cloud-config, a script or a MIME multipart; empty: a broader scope's user-data applies"),
                Field("metaData", "Meta-data", kind="json", hint="a JSON object of extra meta-data keys; may be empty"),
                Field("vendorData", "Vendor-data", kind="textarea", blank=None,
                      hint="empty: a broader scope's vendor-data applies")),
        preview_template="cloudinit_preview.html", preview=documents_preview)
