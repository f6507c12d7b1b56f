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

# Each takes power away from a node or interrupts it: the faces ask for a confirmation first (MCP, console).
DESTRUCTIVE = frozenset(Operation) - {Operation.On}

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

