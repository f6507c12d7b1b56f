"""What the boot-parameter and cloud-init pages share: entries by scope (admin_api/scoped.py), listed,
created, edited with the ETag they were read with, and deleted, all through the REST collection.

An edit form carries the ETag of the entry it showed and sends it as If-Match.
When someone else changed the entry meanwhile the REST PUT answers 412; the
page then shows their version (read again) next to the submitted one, whose
form now carries the new ETag: posting it again overwrites theirs on purpose.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import (
    Pages,
    api,
    field_errors,
    form,
    offset_of,
    redirect,
    render,
    session_of,
    wants_fragment,
)
from admin_api.inprocess import NativeError, segment
from core.identity import Role
from core.mac import try_normalize_mac
from core.problems import ProblemError

# The scope fields of the REST specs, in their precedence, and how the form names them ("": the site default).
SCOPES = {"mac": "MAC", "componentId": "Component", "nid": "NID", "group": "Group", "role": "Role",
          "": "Site default"}
ROLES = [role.value for role in Role]
PAGE_SIZE = 50
SUMMARY_CHARS = 80


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One value field of a spec, as a form input."""

    name: str  # the spec's (camelCase) field, also the form field's name
    label: str
    kind: str = "text"  # text | textarea | json (a JSON object, typed as text)
    blank: Any = ""  # what an empty input sends: None lets a broader scope's value through
    hint: str = ""


Preview = Callable[[Request, str], Awaitable[dict[str, Any]]]


def scope_label(spec: dict[str, Any]) -> tuple[str, str]:
    """(kind, value) of an entry's scope: the one scope field set, or ("", "") for the site default."""
    for name in SCOPES:
        if name and spec.get(name) is not None:
            return name, str(spec[name])
    return "", ""


async def component_of(request: Request, node: str) -> tuple[str, str | None]:
    """The component a preview box names (by id, or by a MAC of one of its interfaces), and that MAC."""
    mac = try_normalize_mac(node)
    if mac is None:
        return node, None
    found = await api(request).json("GET", "/hsm/v2/Inventory/EthernetInterfaces", query={"mac": mac, "limit": 1})
    if not found["items"]:
        raise ProblemError(404, f"no interface has the MAC {mac}")
    return found["items"][0]["spec"]["componentId"], mac


async def posted(request: Request) -> dict[str, str]:
    """The posted form, with a browser's CRLF line ends as the REST API stores them (LF)."""
    return {name: value.replace("\r\n", "\n") for name, value in (await form(request)).items()}


class Entries:
    """The pages of one REST collection of scoped entries, under `ui`:

    GET  ui                     the list (filters, pager), with the preview for `?node=`
    GET  ui/preview?node=       the preview alone (console.js refreshes it live)
    GET  ui/new, POST ui/new    a new entry
    GET  ui/entries/{id}        the entry (a form for whoever may write it), POST saves it
    POST ui/entries/{id}/delete
    """

    def __init__(self, pages: Pages, *, ui: str, rest: str, noun: str, scope_fields: tuple[str, ...],
                 fields: tuple[Field, ...], read_scope: str, write_scope: str, title: str, preview_template: str,
                 preview: Preview) -> None:
        self.ui, self.rest, self.noun, self.title, self.preview_template = ui, rest, noun, title, preview_template
        self.scopes = {name: label for name, label in SCOPES.items() if name in scope_fields or not name}
        self.fields, self.write_scope, self.preview = fields, write_scope, preview
        pages.get(ui, read_scope)(self.listing)
        pages.get(f"{ui}/preview", read_scope)(self.preview_page)
        pages.get(f"{ui}/new", write_scope)(self.new)
        pages.post(f"{ui}/new", write_scope)(self.create)
        pages.get(f"{ui}/entries/{{id}}", read_scope)(self.entry)
        pages.post(f"{ui}/entries/{{id}}", write_scope)(self.save)
        pages.post(f"{ui}/entries/{{id}}/delete", write_scope)(self.delete)

    # -- translating between a REST spec and a form --------------------------------------------------

    def values_of(self, spec: dict[str, Any]) -> dict[str, str]:
        kind, value = scope_label(spec)
        values = {"scope": kind, "scope_value": value}
        for field in self.fields:
            found = spec.get(field.name)
            if field.kind == "json":
                values[field.name] = json.dumps(found, indent=2) if found else ""
            else:
                values[field.name] = "" if found is None else str(found)
        return values

    def spec_of(self, values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        """The spec a form describes, and what cannot even be put into one (a NID that is no number,
        metadata that is no JSON object); the REST operation checks everything else."""
        spec: dict[str, Any] = {}
        errors: dict[str, str] = {}
        kind, value = values.get("scope", ""), values.get("scope_value", "").strip()
        if kind not in self.scopes:
            errors["scope"] = f"choose one of {', '.join(self.scopes.values())}"
        elif kind and not value:
            errors["scope"] = f"give the {self.scopes[kind]} this entry is for"
        elif kind == "nid":
            if value.isascii() and value.isdigit():
                spec["nid"] = int(value)
            else:
                errors["scope"] = "a NID is a whole number"
        elif kind:
            spec[kind] = value
        for field in self.fields:
            text = values.get(field.name, "")
            if field.kind == "json":
                try:
                    parsed = json.loads(text) if text.strip() else {}
                except ValueError as exc:
                    errors[field.name] = f"not JSON: {exc}"
                    continue
                if not isinstance(parsed, dict):
                    errors[field.name] = "must be a JSON object ({...})"
                    continue
                spec[field.name] = parsed
            else:
                spec[field.name] = text if text.strip() else field.blank
        return spec, errors

    def inline_errors(self, exc: NativeError) -> dict[str, str]:
        """The REST problem's field errors under the form's field names (every scope field is the scope input)."""
        errors: dict[str, str] = {}
        for where, detail in field_errors(exc).items():
            name = where.split(".")[0]
            errors.setdefault("scope" if name in SCOPES else name, detail)
        if not errors:
            errors[""] = exc.problem.detail or exc.problem.title
        return errors

    def summary(self, spec: dict[str, Any]) -> dict[str, str]:
        """Each field's first line, shortened, for the list."""
        shown = {}
        for field in self.fields:
            value = spec.get(field.name)
            if field.kind == "json":
                text = json.dumps(value) if value else ""
            else:
                text = "" if value is None else str(value).strip()
            first = text.splitlines()[0] if text else ""
            shown[field.name] = first if len(first) <= SUMMARY_CHARS else first[:SUMMARY_CHARS - 1] + "…"
        return shown

    # -- the pages -------------------------------------------------------------------------------------

    async def listing(self, request: Request) -> Response:
        kind = request.query_params.get("scope", "")
        value = request.query_params.get("value", "").strip()
        offset = offset_of(request)
        node = request.query_params.get("node", "").strip()
        query: dict[str, Any] = {"limit": PAGE_SIZE, "offset": offset}
        if kind in self.scopes and kind and value:
            query[kind] = value
        problem, items, total = None, [], 0
        try:
            found = await api(request).json("GET", self.rest, query=query)
            items, total = found["items"], found["metadata"]["total"]
        except NativeError as exc:  # a filter the REST list refuses (a NID that is no number): said in the page
            problem = exc.problem.detail or exc.problem.title
        rows = [{"id": item["metadata"]["id"], "scope": scope_label(item["spec"]),
                 "summary": self.summary(item["spec"]), "updated": item["metadata"]["updatedAt"]} for item in items]
        filters = {"scope": kind if kind in self.scopes else "", "value": value, "node": node}
        context: dict[str, Any] = dict(
            rows=rows, total=total, offset=offset, page_size=PAGE_SIZE, filters=filters, problem=problem,
            here_query=urllib.parse.urlencode({k: v for k, v in filters.items() if v}))
        if wants_fragment(request):
            return render(request, "scoped_table.html", **self.common(), **context)
        return render(request, "scoped_list.html", 400 if problem else 200, **self.common(), **context,
                      **await self.preview_context(request, node))

    async def preview_page(self, request: Request) -> Response:
        node = request.query_params.get("node", "").strip()
        if not wants_fragment(request):
            return redirect(request, f"{self.ui}?{urllib.parse.urlencode({'node': node})}")
        return render(request, self.preview_template, ui=self.ui, **await self.preview_context(request, node))

    async def new(self, request: Request) -> Response:
        values = {"scope": "componentId", "scope_value": "", **{f.name: "" for f in self.fields}}
        return await self.form_page(request, None, values, request.query_params.get("node", "").strip())

    async def create(self, request: Request) -> Response:
        values = await posted(request)
        node = values.get("node", "").strip()
        spec, errors = self.spec_of(values)
        if errors:
            return await self.form_page(request, None, values, node, errors=errors, status=422)
        try:
            created = await api(request).json("POST", self.rest, body={"spec": spec})
        except NativeError as exc:
            return await self.form_page(request, None, values, node, errors=self.inline_errors(exc),
                                        status=exc.problem.status)
        entry_id = created["metadata"]["id"]
        return redirect(request, self.entry_url(entry_id, node), f"Created {self.noun} {entry_id}.")

    async def entry(self, request: Request) -> Response:
        entry_id = request.path_params["id"]
        answer = await api(request).request("GET", f"{self.rest}/{segment(entry_id)}")
        found = answer.json()
        node = request.query_params.get("node", "").strip() or self.own_node(found["spec"])
        return await self.form_page(request, entry_id, self.values_of(found["spec"]), node,
                                    etag=answer.headers["etag"], updated=found["metadata"]["updatedAt"])

    async def save(self, request: Request) -> Response:
        entry_id = request.path_params["id"]
        values = await posted(request)
        node, etag = values.get("node", "").strip(), values.get("etag", "")
        spec, errors = self.spec_of(values)
        if errors:
            return await self.form_page(request, entry_id, values, node, etag=etag, errors=errors, status=422)
        native = api(request)
        try:
            await native.request("PUT", f"{self.rest}/{segment(entry_id)}", headers={"If-Match": etag},
                                 body={"metadata": {"id": entry_id}, "spec": spec})
        except NativeError as exc:
            if exc.problem.status != 412:
                return await self.form_page(request, entry_id, values, node, etag=etag,
                                            errors=self.inline_errors(exc), status=exc.problem.status)
            # Changed since this form was loaded: theirs as it is now, and the form again with its new ETag.
            answer = await native.request("GET", f"{self.rest}/{segment(entry_id)}")
            current = answer.json()
            return await self.form_page(request, entry_id, values, node, etag=answer.headers["etag"], status=412,
                                        theirs=self.values_of(current["spec"]),
                                        updated=current["metadata"]["updatedAt"])
        return redirect(request, self.entry_url(entry_id, node), f"Saved {self.noun} {entry_id}.")

    async def delete(self, request: Request) -> Response:
        entry_id = request.path_params["id"]
        await api(request).request("DELETE", f"{self.rest}/{segment(entry_id)}")
        return redirect(request, self.ui, f"Deleted {self.noun} {entry_id}.")

    # -- helpers -----------------------------------------------------------------------------------------

    def common(self) -> dict[str, Any]:
        return dict(ui=self.ui, noun=self.noun, title=self.title, scopes=self.scopes, fields=self.fields,
                    write_scope=self.write_scope, roles=ROLES, preview_template=self.preview_template,
                    scope_words=", ".join(label for name, label in self.scopes.items() if name))

    def entry_url(self, entry_id: str, node: str) -> str:
        return f"{self.ui}/entries/{segment(entry_id)}" + (f"?{urllib.parse.urlencode({'node': node})}" if node else "")

    @staticmethod
    def own_node(spec: dict[str, Any]) -> str:
        """The node an entry's page previews by default: the one it is scoped to, if it is scoped to one."""
        return str(spec.get("componentId") or spec.get("mac") or "")

    async def preview_context(self, request: Request, node: str) -> dict[str, Any]:
        return {"node": node, "preview": await self.preview(request, node) if node else None}

    async def form_page(self, request: Request, entry_id: str | None, values: dict[str, str], node: str, *,
                        etag: str = "", errors: dict[str, str] | None = None, status: int = 200,
                        theirs: dict[str, str] | None = None, updated: str = "") -> Response:
        """The entry's page: a form when the session may write it (new, edit, conflict), its values otherwise."""
        return render(request, "scoped_entry.html", status, **self.common(), entry_id=entry_id, values=values,
                      etag=etag, errors=errors or {}, theirs=theirs, updated=updated,
                      editable=session_of(request).can(self.write_scope), **await self.preview_context(request, node))
