"""Import: a file of nodes, its dry-run diff, then the import.

The file is read by core.nodefiles (the reader `chamicore import` uses) and
sent to POST /hsm/v2/import with dryRun=true; the page shows, node by node,
what the import would create and why it refuses the rest.  A node that
already exists exactly as the file says is left out (importing the same file
twice is harmless); one that exists with other values is a change, which an
import (create only) refuses; so is a BMC or groups given for an existing
node, which the import cannot change.  The page also lists the BMCs the
import makes or reuses and the group memberships it adds, as the dry run
answers them.  The commit posts back the canonical JSON the
dry run checked, signed with the session's secret, so what is imported is
exactly what was shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import Pages, api, form_list, redirect, render, session_of
from admin_api.inprocess import NativeError, segment
from core.nodefiles import NodeFileError, read_nodes

pages = Pages()
MAX_FILE = 16 << 20  # 16 MiB: a 10,000-node import with boot parameters fits with room to spare
MAX_COMPARED = 500  # existing nodes fetched to compare field by field; past this they are listed as conflicts
MAX_SHOWN = 1000  # rows of the diff table (problems first); the counts cover every node
PART = 100_000  # characters of the checked content in one form field
SPEC_FIELDS = ("type", "state", "role", "subRole", "nid", "arch", "enabled", "parentId")
_INDEX = re.compile(r"^\$\[(\d+)\]")


def _signature(request: Request, canonical: str) -> str:
    """Binds the checked content to this session: a commit carrying other data (or another session's) is refused."""
    key = session_of(request).csrf_token.encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


@pages.get("/ui/import", scope="write:smd")
async def start(request: Request) -> Response:
    return render(request, "import.html", problem=None, max_mib=MAX_FILE >> 20)


def _refused(request: Request, problem: str, status: int = 422) -> Response:
    return render(request, "import.html", status, problem=problem, max_mib=MAX_FILE >> 20)


@pages.post("/ui/import", scope="write:smd")
async def check(request: Request) -> Response:
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _refused(request, "Choose a file of nodes to import.")
    try:
        data = await upload.read(MAX_FILE + 1)
    finally:
        await upload.close()
    if len(data) > MAX_FILE:
        return _refused(request, f"The file is larger than {MAX_FILE >> 20} MiB: split it.", 413)
    try:
        nodes = read_nodes(data.decode("utf-8-sig"), upload.filename)
    except UnicodeDecodeError:
        return _refused(request, f"{upload.filename}: not UTF-8 text.")
    except NodeFileError as exc:
        return _refused(request, f"{upload.filename}: {exc}")
    if not all(isinstance(node, dict) for node in nodes):
        return _refused(request, f"{upload.filename}: every node must be an object of fields (a mapping).")
    return await _dry_run(request, upload.filename, nodes)


async def _dry_run(request: Request, name: str, nodes: list[dict]) -> Response:
    try:
        answer, by_index = await _errors_by_index(request, nodes)
        if by_index:
            # The import checks the database only once every item is valid: the valid rest, checked on its own,
            # tells which of them exist (or clash) too.
            rest = [i for i in range(len(nodes)) if i not in by_index]
            if rest:
                for i, found in (await _errors_by_index(request, [nodes[i] for i in rest]))[1].items():
                    by_index[rest[i]] = found
    except NativeError as exc:  # refused as a whole (a scope the items need, a body too large, no node at all)
        return _refused(request, exc.problem.detail or exc.problem.title, exc.problem.status)
    passed = answer.json() if answer.status < 400 else {}
    ids = passed.get("ids", [])
    rows = await _rows(request, nodes, by_index, ids)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("created", "unchanged",
                                                                                   "changed", "error")}
    # A node without an id gets the one the dry run generated: what is committed is what was shown.
    kept = [{**nodes[row["index"]], "id": row["id"]} if row["id"] else nodes[row["index"]]
            for row in rows if row["status"] == "created"]
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    committable = counts["changed"] == counts["error"] == 0 and bool(kept)
    rows.sort(key=lambda row: ({"error": 0, "changed": 1, "created": 2, "unchanged": 3}[row["status"]], row["index"]))
    # Starlette refuses a form field over 1 MiB (as sent, url-encoded: up to 9 bytes a character): parts under it.
    parts = [canonical[i:i + PART] for i in range(0, len(canonical), PART)] if committable else []
    return render(request, "import_diff.html", 200, name=name, rows=rows[:MAX_SHOWN], total=len(rows),
                  counts=counts, committable=committable, parts=parts, signature=_signature(request, canonical),
                  shown=min(len(rows), MAX_SHOWN), bmcs=passed.get("bmcs", [])[:MAX_SHOWN],
                  groups=passed.get("groups", {}))


async def _errors_by_index(request: Request, nodes: list[dict]):
    """The dry run's answer, and its errors by node index ({} when it passed)."""
    answer = await api(request).request("POST", "/hsm/v2/import", query={"dryRun": "true"}, body=nodes,
                                        ok=(409, 422))
    by_index: dict[int, list[tuple[str, str]]] = {}
    if answer.status >= 400:
        for error in answer.json().get("errors") or []:  # as sent: objects with field and detail
            field = str(error.get("field", ""))
            if found := _INDEX.match(field):
                by_index.setdefault(int(found.group(1)), []).append((field[found.end():].lstrip(".") or "node",
                                                                      str(error.get("detail", ""))))
        if not by_index:
            raise NativeError(answer)
    return answer, by_index


async def _rows(request: Request, nodes: list[dict], by_index: dict[int, list[tuple[str, str]]],
                ids: list[str]) -> list[dict[str, Any]]:
    rows = []
    compared = 0
    for index, node in enumerate(nodes):
        node_id = str(node.get("id") or (ids[index] if index < len(ids) else ""))
        errors = by_index.get(index, [])
        row: dict[str, Any] = {"index": index, "id": node_id, "summary": _summary(node), "changes": [],
                               "errors": errors, "status": "error" if errors else "created"}
        exists = any(field == "id" and detail.endswith("already exists") for field, detail in errors)
        if exists and compared < MAX_COMPARED:
            compared += 1
            current = (await api(request).json("GET", f"/hsm/v2/State/Components/{segment(node_id)}"))["spec"]
            # What remains once the node's own existence (its id, and MACs or nid it already holds) is set aside.
            own = [(f, d) for f, d in errors
                   if f == "id" or d.endswith(f"component {node_id!r}") or d.endswith(f"to {node_id!r}")]
            others = [error for error in errors if error not in own]
            row["changes"] = (_changes(node, current) + _added_interfaces(node, {f for f, _ in own})
                              + [(name, None, _short(node[name])) for name in ("bmc", "groups") if node.get(name)])
            if row["changes"] or "bootParams" in node or "cloudInit" in node:
                row["status"] = "changed" if not others else "error"
            elif not others:
                row["status"] = "unchanged"
            row["errors"] = others
        rows.append(row)
    return rows


def _changes(node: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """(field, now, in the file) for each field the file gives another value than the node has."""
    changes = [(name, current.get(name), node[name]) for name in SPEC_FIELDS
               if name in node and node[name] != current.get(name)]
    location = node.get("location")
    if isinstance(location, dict):
        now = current.get("location") or {}
        changes += [(f"location.{key}", now.get(key), value) for key, value in location.items()
                    if value != now.get(key)]
    return changes


def _added_interfaces(node: dict, held: set[str]) -> list[tuple[str, Any, Any]]:
    """The file's interfaces whose MAC the existing node does not hold (`held`: the fields naming those it does)."""
    nics = node.get("networkInterfaces")
    if not isinstance(nics, list):
        return []
    return [(f"networkInterfaces[{j}]", None, nic.get("macAddr")) for j, nic in enumerate(nics)
            if isinstance(nic, dict) and f"networkInterfaces[{j}].macAddr" not in held]


def _summary(node: dict) -> str:
    parts = [str(node[key]) for key in ("type", "role") if node.get(key)]
    if node.get("nid") is not None:
        parts.append(f"nid {node['nid']}")
    nics = node.get("networkInterfaces")
    if isinstance(nics, list):
        parts += [str(nic.get("macAddr", "")) for nic in nics if isinstance(nic, dict)]
    if isinstance(node.get("bmc"), dict):
        parts.append(f"BMC {node['bmc'].get('address', '')}")
    if isinstance(node.get("groups"), list):
        parts.append("groups " + ", ".join(str(group) for group in node["groups"]))
    if "bootParams" in node:
        parts.append("boot parameters")
    if "cloudInit" in node:
        parts.append("cloud-init")
    return " · ".join(parts)


def _short(value: Any) -> str:
    """A BMC by its address, groups by their names: what a change row shows."""
    if isinstance(value, dict):
        return str(value.get("address", ""))
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


@pages.post("/ui/import/commit", scope="write:smd")
async def commit(request: Request) -> Response:
    data = await request.form()
    canonical = "".join(await form_list(request, "nodes"))
    if not hmac.compare_digest(str(data.get("signature") or ""), _signature(request, canonical)):
        return _refused(request, "This import is not the one the dry run checked (or it is from an older session): "
                                 "upload the file again.", 400)
    nodes = json.loads(canonical)
    try:
        done = await api(request).json("POST", "/hsm/v2/import", body=nodes)
    except NativeError as exc:
        return _refused(request, f"Nothing was imported: {exc.problem.detail or exc.problem.title}",
                        exc.problem.status)
    return redirect(request, "/ui/import", flash=f"Imported {done['created']} nodes from {data.get('name') or 'the file'}.")
