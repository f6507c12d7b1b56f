"""A node with everything it needs to boot, as import and provisioning take it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from admin_api.bss.bootparams import check_text, check_uri
from admin_api.cloudinit.userdata import check_meta_data, check_user_data
from admin_api.http import field_problem
from admin_api.smd.schemas import ComponentSpec, Id, InlineInterface
from core.identity import ComponentType

Uri = Annotated[str, msgspec.Meta(max_length=2048)]
Document = Annotated[str, msgspec.Meta(max_length=512 * 1024)]


class NodeBootParams(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    kernel: Uri
    initrd: Uri = ""
    cmdline: Annotated[str, msgspec.Meta(max_length=4096)] = ""


class NodeCloudInit(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    user_data: Document | None = None
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    vendor_data: Document | None = None


class NodeBmc(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """The BMC an imported node is controlled through: a BMC component with this endpoint, made or reused."""

    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300, description=(
        "https://host[:port] for Redfish (a bare host means https), ipmi://host:port for IPMI"))]
    credential_id: Id | None = None
    insecure: bool = False


class NodeImport(ComponentSpec, kw_only=True):
    """One node of a bulk import: the component, its interfaces, and optionally its own
    boot parameters and cloud-init payload (scoped to this component), its BMC and the groups it joins."""

    id: Id | None = None
    type: ComponentType = ComponentType.Node
    network_interfaces: list[InlineInterface] = msgspec.field(default_factory=list)
    boot_params: NodeBootParams | None = None
    cloud_init: NodeCloudInit | None = None
    bmc: NodeBmc | None = None
    groups: Annotated[list[Id], msgspec.Meta(max_length=64, description="existing groups the node joins")] = \
        msgspec.field(default_factory=list)


class NodeProvision(ComponentSpec, kw_only=True):
    """The whole desired state of one node.  `networkInterfaces` becomes exactly the
    node's interfaces; `bootParams` / `cloudInit` set its own entries, null removes
    them, leaving them out keeps them as they are."""

    type: ComponentType = ComponentType.Node
    network_interfaces: list[InlineInterface] = msgspec.field(default_factory=list)
    boot_params: NodeBootParams | None | msgspec.UnsetType = msgspec.UNSET
    cloud_init: NodeCloudInit | None | msgspec.UnsetType = msgspec.UNSET


def check_boot_params(params: NodeBootParams | None | msgspec.UnsetType, path: str) -> None:
    if params is None or params is msgspec.UNSET:
        return
    check_uri(params.kernel, f"{path}.kernel", True)
    check_uri(params.initrd, f"{path}.initrd", False)
    check_text(params.cmdline, f"{path}.cmdline")


def check_cloud_init(payload: NodeCloudInit | None | msgspec.UnsetType, path: str) -> None:
    if payload is None or payload is msgspec.UNSET:
        return
    check_user_data(payload.user_data, f"{path}.userData")
    check_user_data(payload.vendor_data, f"{path}.vendorData")
    if "instance-id" in payload.meta_data:
        raise field_problem(f"{path}.metaData.instance-id", "is computed by Chamicore; leave it out")
    check_meta_data(payload.meta_data, f"{path}.metaData")
