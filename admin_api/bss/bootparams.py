"""/boot/v1/bootparams: kernel, initrd and command line by scope (MAC, component, NID, group,
role or none: the site default, in that precedence).  A NID entry belongs to the number: it
applies to whichever node holds that NID, now or later."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from admin_api.http import field_problem
from admin_api.resources import metadata
from admin_api.routing import Router
from admin_api.scoped import ScopedEntries
from admin_api.smd.schemas import Id
from core.envelope import Resource
from core.identity import Role, boot_text_problem

KIND, API_VERSION = "BootParams", "boot/v1"
BASE = "/boot/v1/bootparams"
router = Router("bootparams")
COLUMNS = "id, mac, component_id, nid, group_name, role, kernel, initrd, cmdline, created_at, updated_at"
URI_SCHEMES = ("http", "https", "tftp")
Uri = Annotated[str, msgspec.Meta(max_length=2048)]


class BootParamsSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    mac: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    component_id: Id | None = None
    nid: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)] | None = None
    group: Id | None = None
    role: Role | None = None
    kernel: Uri
    initrd: Uri = ""
    cmdline: Annotated[str, msgspec.Meta(max_length=4096)] = ""


def check_text(value: str, path: str) -> None:
    # These land in an iPXE script, one command per line, split into words on
    # whitespace: a line break, a control character or a word such as `||` or
    # `;` would let a value smuggle in commands of its own.
    problem = boot_text_problem(value, one_word=False)
    if problem:
        raise field_problem(path, problem)


def check_uri(value: str, path: str, required: bool) -> None:
    if not value:
        if required:
            raise field_problem(path, "is required")
        return
    problem = boot_text_problem(value, one_word=True)
    if problem:
        raise field_problem(path, problem)
    try:
        parts = urlsplit(value)  # raises on an unclosed `[` or a netloc that NFKC-normalises to `/?#@:`
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in URI_SCHEMES or not parts.netloc:
        raise field_problem(path, f"expected an {', '.join(URI_SCHEMES)} URL, got {value[:80]!r}")


class BootParams(ScopedEntries):
    base, table, columns, kind, api_version = BASE, "bss.boot_params", COLUMNS, KIND, API_VERSION
    noun, names, id_prefix = "boot parameters", ("bootparams", "bootparams"), "bp"
    spec, scope_fields = BootParamsSpec, ("mac", "componentId", "nid", "group", "role")
    domain, events_as, read_scope, write_scope = "bss", "bootparams", "read:bss", "write:bss"

    def to_resource(self, row) -> Resource[BootParamsSpec]:
        spec = BootParamsSpec(mac=row["mac"], component_id=row["component_id"], nid=row["nid"],
                              group=row["group_name"],
                              role=Role(row["role"]) if row["role"] else None, kernel=row["kernel"],
                              initrd=row["initrd"], cmdline=row["cmdline"])
        return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)

    def check(self, spec: BootParamsSpec) -> None:
        check_uri(spec.kernel, "$.spec.kernel", True)
        check_uri(spec.initrd, "$.spec.initrd", False)
        check_text(spec.cmdline, "$.spec.cmdline")

    def fields(self, spec: BootParamsSpec) -> dict[str, str]:
        return {"kernel": spec.kernel, "initrd": spec.initrd, "cmdline": spec.cmdline}

    def event_data(self, row, scope: dict) -> dict:
        return msgspec.to_builtins(self.to_resource(row).spec)


BOOT_PARAMS = BootParams()  # also written through by the OpenCHAMI face (admin_api/openchami/bss.py)
BOOT_PARAMS.routes(router)
