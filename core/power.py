"""Power operations and the steps each one takes (shared by the admin API and the engine).

Every step but Nmi ends in a power state that can be verified, which is what
makes a transition safe to resume after a crash: a step whose node is
already in the wanted state is not sent again.  So a restart is two steps,
off then on, as OpenCHAMI's PCS does it, rather than one ForceRestart whose
effect cannot be told apart from "not sent yet".
"""

from __future__ import annotations

import dataclasses
import enum


class Operation(enum.StrEnum):
    On = "On"
    ForceOff = "ForceOff"
    GracefulShutdown = "GracefulShutdown"
    GracefulRestart = "GracefulRestart"
    ForceRestart = "ForceRestart"
    Nmi = "Nmi"


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    reset_type: str          # the Redfish ResetType sent
    wanted: str | None       # "On"/"Off" once done; None: nothing to verify (Nmi)


STEPS: dict[Operation, tuple[Step, ...]] = {
    Operation.On: (Step("On", "On"),),
    Operation.ForceOff: (Step("ForceOff", "Off"),),
    Operation.GracefulShutdown: (Step("GracefulShutdown", "Off"),),
    Operation.GracefulRestart: (Step("GracefulShutdown", "Off"), Step("On", "On")),
    Operation.ForceRestart: (Step("ForceOff", "Off"), Step("On", "On")),
    Operation.Nmi: (Step("Nmi", None),),
}

# The /power/v1/actions/<name> shortcuts.
ACTIONS: dict[str, Operation] = {
    "on": Operation.On,
    "off": Operation.GracefulShutdown,
    "reboot": Operation.GracefulRestart,
    "reset": Operation.ForceRestart,
}

ACTIVE_TASK_STATES = ("pending", "sending", "verifying")
FINAL_TASK_STATES = ("succeeded", "failed", "aborted")
# The same, as SQL: `WHERE state IN ('pending', 'sending', 'verifying')`.
ACTIVE_TASK_STATES_SQL = "(" + ", ".join(f"'{state}'" for state in ACTIVE_TASK_STATES) + ")"


# How each node reaches its BMC: its own Redfish system mapping, else its parent BMC's endpoint.
TARGETS_SQL = """
SELECT n.id, c.type, s.path, e.id AS bmc_id, e.address, e.credential_id, e.insecure
FROM unnest($1::text[]) AS n(id)
LEFT JOIN smd.components c ON c.id = n.id
LEFT JOIN smd.redfish_systems s ON s.component_id = n.id
LEFT JOIN smd.redfish_endpoints e ON e.id = coalesce(s.endpoint_id,
    (SELECT p.id FROM smd.components p WHERE p.id = c.parent_id AND p.type = 'BMC'))
"""


def target_problem(row) -> str | None:
    """What stops power control of this node, said so that an admin knows what to do; None if nothing."""
    if row["type"] is None:
        return f"no component {row['id']!r}"
    if row["type"] != "Node":
        return f"{row['id']!r} is a {row['type']}, not a Node"
    if row["bmc_id"] is None:
        return (f"node {row['id']!r} has no BMC: run discovery on its BMC, or set its parentId to a BMC component "
                "that has a Redfish endpoint (/hsm/v2/Inventory/RedfishEndpoints)")
    if row["credential_id"] is None:
        return (f"BMC {row['bmc_id']!r} has no credential: store one at /auth/v1/credentials and set credentialId "
                f"on /hsm/v2/Inventory/RedfishEndpoints/{row['bmc_id']}")
    return None
