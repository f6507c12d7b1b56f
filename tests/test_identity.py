import re

from hypothesis import given
from hypothesis import strategies as st

from core.identity import ID_PATTERN, ComponentState, ComponentType, Role, generate_id, is_valid_id


def test_enums_match_adr_010():
    assert [t.value for t in ComponentType] == [
        "Cabinet", "BMC", "Node", "Processor", "Memory", "Accelerator", "NIC", "Drive", "PDU", "Switch"]
    assert [s.value for s in ComponentState] == ["Unknown", "Empty", "Populated", "Off", "On", "Standby", "Halt", "Ready"]
    assert [r.value for r in Role] == ["Compute", "Service", "Management", "Application", "Storage", "System"]


def test_valid_and_invalid_ids():
    for good in ("node-1", "x3000c0s17b0n0", "gpu.node_01", "ab", "A" * 255):
        assert is_valid_id(good), good
    for bad in ("", "a", "-node", "node-", "node 1", "node/1", "nöde", "a" * 256, "node\n", ".x", "x_", None, 5):
        assert not is_valid_id(bad), bad


def test_generated_ids_follow_the_pattern_and_differ():
    ids = {generate_id("Node") for _ in range(500)}
    assert len(ids) == 500
    for value in ids:
        assert re.fullmatch(r"node-[0-9a-f]{8}", value)
        assert is_valid_id(value)


@given(st.text(max_size=300))
def test_is_valid_id_agrees_with_the_regex(value):
    expected = value.isascii() and re.fullmatch(ID_PATTERN[:-1] + r"\Z", value) is not None
    assert is_valid_id(value) == expected
