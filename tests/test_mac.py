import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.mac import InvalidMac, normalize_mac, try_normalize_mac

octets = st.lists(st.integers(0, 255), min_size=6, max_size=6)


def spellings(values):
    hexes = [f"{v:02x}" for v in values]
    bare = "".join(hexes)
    return [
        ":".join(hexes),
        "-".join(hexes).upper(),
        ".".join(bare[i : i + 4] for i in range(0, 12, 4)),
        bare,
        bare.upper(),
        ":".join(hexes).upper(),
    ]


@given(octets)
def test_every_spelling_maps_to_the_colon_form(values):
    expected = ":".join(f"{v:02x}" for v in values)
    for spelling in spellings(values):
        assert normalize_mac(spelling) == expected


@pytest.mark.parametrize("bad", [
    "", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff",
    "aabb.ccdd.eef", "aabbccddeeff0", "aa::bb:cc:dd:ee:f", "aabbccddeefg", "aa bb cc dd ee ff",
    "１１:22:33:44:55:66", "aabb:ccdd:eeff", "a:b:c:d:e:f",
])
def test_garbage_is_rejected(bad):
    with pytest.raises(InvalidMac):
        normalize_mac(bad)
    assert try_normalize_mac(bad) is None


def test_non_string_is_rejected():
    with pytest.raises(InvalidMac):
        normalize_mac(0xAABBCCDDEEFF)


@given(st.text(max_size=20))
def test_anything_accepted_is_canonical(text):
    result = try_normalize_mac(text)
    if result is not None:
        assert normalize_mac(result) == result
        assert len(result) == 17 and result == result.lower()
