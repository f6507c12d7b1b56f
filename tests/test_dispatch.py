"""Request dispatch, compiled and twin, against an index built in memory."""

import importlib.machinery

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.mac import try_normalize_mac
from hotpath import _dispatch, _dispatch_py
from hotpath.answers import AnswerBuilder
from hotpath.index import Index

NODES = [
    {"id": "node-1", "type": "Node", "role": "Compute", "sub_role": "", "nid": 1, "arch": "x86_64",
     "enabled": True, "rack": "R1", "unit": 3, "slot": 0, "sub_slot": 0, "groups": ["rack1"],
     "macs": ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"], "ip_addrs": [[{"ipAddress": "10.1.0.1"}], []],
     "cloud_init_token": "00000000000000000000000000000001"},
    {"id": "node-2", "type": "Node", "role": "Storage", "sub_role": "", "nid": 2, "arch": "aarch64",
     "enabled": False, "rack": None, "unit": None, "slot": 0, "sub_slot": 0, "groups": [],
     "macs": ["aa:bb:cc:00:00:03"], "ip_addrs": [[{"ipAddress": "10.1.0.3"}]],
     "cloud_init_token": "00000000000000000000000000000002"},
    {"id": "node-3", "type": "Node", "role": "Service", "sub_role": "", "nid": 3, "arch": "x86_64",
     "enabled": True, "rack": None, "unit": None, "slot": 0, "sub_slot": 0, "groups": [],
     "macs": ["aa:bb:cc:00:00:04"], "ip_addrs": [[]], "cloud_init_token": "00000000000000000000000000000003"},
]
PARAMS = [
    {"mac": None, "component_id": None, "group_name": None, "role": "Compute", "kernel": "http://k/{{arch}}",
     "initrd": "http://i", "cmdline": "nid={{nid}}"},
    {"mac": None, "component_id": None, "group_name": None, "role": "Storage", "kernel": "http://k/storage",
     "initrd": "", "cmdline": ""},
]
PAYLOADS = [{"component_id": None, "group_name": None, "role": None, "user_data": "#cloud-config\n",
             "meta_data": {"site": "s1"}, "vendor_data": None}]


def make_index(base_url=None):
    batch = AnswerBuilder(base_url, 2.0, 60.0).batch()
    return Index.from_answers(batch(NODES, PARAMS, PAYLOADS))
@pytest.fixture(params=["compiled", "twin"])
def dispatcher(request):
    module = _dispatch if request.param == "compiled" else _dispatch_py
    return module.Dispatcher(make_index(), None, "http://127.0.0.1:27778", 2.0, 60.0, 10)


def test_compiled_dispatch_loaded():
    assert _dispatch.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@pytest.mark.parametrize("spelling", ["aa:bb:cc:00:00:01", "AA-BB-CC-00-00-01", "aabb.cc00.0001", "AABBCC000001",
                                      "aa%3Abb%3Acc%3A00%3A00%3A01"])
def test_every_mac_spelling_finds_the_node(dispatcher, spelling):
    status, ct, body, node_id, endpoint, outcome = dispatcher.dispatch(
        "/boot/v1/bootscript", f"mac={spelling}", "boot:8080")
    assert (status, node_id, outcome) == (200, "node-1", _dispatch.OUT_OK)
    text = body.decode()
    assert "kernel --name kernel http://k/x86_64 nid=1 initrd=initrd BOOTIF=01-aa-bb-cc-00-00-01" in text
    assert "ds=nocloud-net;s=http://boot:8080/cloud-init/node-1/" in text


def test_second_interface_gets_its_own_bootif(dispatcher):
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:02", "")[2].decode()
    assert "BOOTIF=01-aa-bb-cc-00-00-02" in body
    assert "chain http://127.0.0.1:27778/boot/v1/bootscript?mac=aa:bb:cc:00:00:02&retry=1" in body


def test_lookup_by_name_and_nid(dispatcher):
    # Anyone may ask by name or nid: the answer boots the node but names neither its MAC nor its
    # cloud-init seed token (tests/security/test_cloudinit_access.py).
    for query in ("name=node-1", "nid=1", "nid=0001"):
        status, _, body, node_id, _, outcome = dispatcher.dispatch("/boot/v1/bootscript", query, "b")
        assert (status, node_id, outcome) == (200, "node-1", _dispatch.OUT_OK), query
        assert b"kernel --name kernel http://k/x86_64 nid=1 initrd=initrd ds=nocloud-net;s=http://b/cloud-init/node-1/ " \
            in body
        assert b"BOOTIF=" not in body and b"00000000000000000000000000000001" not in body


def test_unknown_disabled_and_unconfigured_nodes_wait(dispatcher):
    cases = {
        "mac=00:00:00:00:00:99": "no node is registered for mac=00:00:00:00:00:99",
        "mac=aa:bb:cc:00:00:03": "node node-2 is disabled",
        "mac=aa:bb:cc:00:00:04": "no boot parameters apply to node node-3",
        "nid=42": "no node is registered for nid=42",
    }
    for query, message in cases.items():
        status, ct, body, _, _, outcome = dispatcher.dispatch("/boot/v1/bootscript", query + "&retry=3", "b:1")
        assert (status, ct, outcome) == (200, _dispatch.CT_TEXT, _dispatch.OUT_WAIT)
        lines = body.decode().splitlines()
        assert lines[0] == "#!ipxe" and message in lines[1]
        assert lines[2] == "sleep 10"
        assert lines[3] == f"chain http://b:1/boot/v1/bootscript?{query}"


@pytest.mark.parametrize("query", ["", "arch=x86_64", "mac=zz:zz", "mac=", "name=bad id", "name=%0Aevil",
                                   "nid=-1", "nid=abc", "nid=²", "nid=99999999999999999999"])
def test_bad_queries_are_400_problems(dispatcher, query):
    status, ct, body, node_id, _, outcome = dispatcher.dispatch("/boot/v1/bootscript", query, "b")
    assert (status, ct, node_id, outcome) == (400, _dispatch.CT_PROBLEM, None, _dispatch.OUT_BAD_REQUEST)
    problem = msgspec.json.decode(body)
    assert problem["status"] == 400 and problem["title"] == "Bad Request" and problem["detail"]


def test_retry_grows_delay_and_is_clamped(dispatcher):
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:01&retry=3", "b")[2].decode()
    assert "sleep 16" in body and body.rstrip().endswith("&retry=4")
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:01&retry=999999999999999999999", "b")[2]
    assert body.decode().rstrip().endswith("&retry=64") and b"sleep 60" in body
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:01&retry=junk", "b")[2]
    assert b"sleep 2\n" in body


def test_hostile_host_header_falls_back(dispatcher):
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:01", "evil\nchain http://x")[2]
    assert b"evil" not in body and b"http://127.0.0.1:27778/cloud-init/node-1/" in body


def test_configured_boot_url_is_prerendered():
    index = make_index("http://boot.example")
    entry = index.by_mac["aa:bb:cc:00:00:01"]
    assert entry.body.startswith(b"#!ipxe") and entry.cache is None
    dispatcher = _dispatch.Dispatcher(index, "http://boot.example", "http://x", 2.0, 60.0, 10)
    body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:01", "ignored:1")[2]
    assert body is entry.body and entry.cache is None


def test_cloud_init_by_id_and_by_ip(dispatcher):
    token = "00000000000000000000000000000001"
    status, ct, body, node_id, endpoint, _ = dispatcher.dispatch(f"/cloud-init/node-1/{token}/meta-data", "", "")
    assert (status, ct, node_id, endpoint) == (200, _dispatch.CT_JSON, "node-1", _dispatch.EP_CLOUD_INIT)
    meta = msgspec.json.decode(body)
    assert meta["local-hostname"] == "node-1" and meta["site"] == "s1" and meta["instance-id"].startswith("node-1-")
    assert dispatcher.dispatch(f"/cloud-init/node-1/{token}/user-data", "", "")[2] == b"#cloud-config\n"
    assert dispatcher.dispatch(f"/cloud-init/node-1/{token}/vendor-data", "", "")[2] == b""
    # Without the token, by id only from the node's own address.
    assert dispatcher.dispatch("/cloud-init/node-1/user-data", "", "")[5] == _dispatch.OUT_NEEDS_CLIENT_IP
    assert dispatcher.cloud_init_by_ip("10.1.0.1", "/cloud-init/node-1/user-data")[2] == b"#cloud-config\n"
    assert dispatcher.cloud_init_by_ip("10.1.0.3", "/cloud-init/node-1/user-data")[0] == 404
    assert dispatcher.dispatch("/cloud-init/user-data", "", "")[5] == _dispatch.OUT_NEEDS_CLIENT_IP
    assert dispatcher.cloud_init_by_ip("10.1.0.3", "/cloud-init/meta-data")[3] == "node-2"
    status, ct, body, *_ = dispatcher.cloud_init_by_ip("10.9.9.9", "/cloud-init/meta-data")
    assert (status, ct) == (404, _dispatch.CT_PROBLEM)


@pytest.mark.parametrize("path", ["/cloud-init/nobody/user-data", "/cloud-init/node-1/secrets",
                                  "/cloud-init/node-1/", "/cloud-init/whatever", "/", "/admin", "/boot/v1/x"])
def test_unknown_paths_are_404_problems(dispatcher, path):
    status, ct, body, *_ = dispatcher.dispatch(path, "", "")
    assert (status, ct) == (404, _dispatch.CT_PROBLEM)
    assert msgspec.json.decode(body)["status"] == 404


def test_first_stage_tries_each_device(dispatcher):
    status, _, body, *_ = dispatcher.dispatch("/boot/v1/boot.ipxe", "", "boot:1")
    text = body.decode()
    assert status == 200 and text.startswith("#!ipxe\n")
    assert "http://boot:1/boot/v1/bootscript?mac=${mac:hexhyp}&arch=${buildarch}&uuid=${uuid}" in text
    assert "${net${idx}/mac:hexhyp}" in text and "inc idx" in text


queries = st.one_of(
    st.text(max_size=60),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["mac", "name", "nid", "retry", "x"]), st.text(max_size=30)),
    st.lists(st.sampled_from(["mac=aa:bb:cc:00:00:01", "mac=AABBCC000003", "retry=2", "nid=1", "name=node-3",
                              "retry=-5", "mac=%41%41bbcc000004", "nid=3", "a=b", "mac=1+2"]), max_size=4)
    .map("&".join),
)


@settings(max_examples=500)
@given(queries, st.sampled_from(["", "boot:1", "bad host", "[::1]:80"]))
def test_compiled_and_twin_answer_alike(query, host):
    compiled = _dispatch.Dispatcher(make_index(), None, "http://f", 2.0, 60.0, 10)
    twin = _dispatch_py.Dispatcher(make_index(), None, "http://f", 2.0, 60.0, 10)
    for path in ("/boot/v1/bootscript", "/cloud-init/" + query[:20] + "/meta-data"):
        assert compiled.dispatch(path, query, host) == twin.dispatch(path, query, host)


@given(st.text(max_size=20))
def test_compiled_mac_rules_match_core(text):
    assert _dispatch.normalize_mac(text) == try_normalize_mac(text)
