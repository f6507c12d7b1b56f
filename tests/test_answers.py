"""Boot-parameter and cloud-init resolution, from rows in a real database."""

import email
import email.policy
import json

import msgspec
import pytest

from hotpath import _render, loader, userdata
from hotpath.answers import AnswerBuilder
from hotpath.index import Index
from tests.helpers.seed import add_node, add_params, add_payload
from tests.test_cloudinit_client import run_cloud_init_process


async def load_answers(conn, ids=None) -> list:
    answers = []
    batch = AnswerBuilder("http://b", 2.0, 60.0).batch()
    await loader.load(conn, lambda rows, params, payloads: answers.extend(batch(rows, params, payloads)), ids,
                      chunk_rows=2)  # small chunks: the chunked path is exercised too
    return answers


async def build(conn, ids=None) -> Index:
    return Index.from_answers(await load_answers(conn, ids))


async def test_boot_params_precedence(conn):
    await add_node(conn, "n-mac", ["00:00:00:00:00:01"], groups=["g1"])
    await add_node(conn, "n-comp", ["00:00:00:00:00:02"], groups=["g1"])
    await add_node(conn, "n-group", ["00:00:00:00:00:03"], groups=["g1", "g2"])
    await add_node(conn, "n-role", ["00:00:00:00:00:04"])
    await add_node(conn, "n-site", ["00:00:00:00:00:05"], role="Service")
    await add_params(conn, "site", kernel="http://site")
    await add_params(conn, "role", role="Compute", kernel="http://role")
    await add_params(conn, "g2", group="g2", kernel="http://g2")
    await add_params(conn, "g1", group="g1", kernel="http://g1")
    await add_params(conn, "comp", component_id="n-comp", kernel="http://comp")
    await add_params(conn, "mac", mac="00:00:00:00:00:01", kernel="http://mac")
    index = await build(conn)
    kernels = {node: index.by_id[node].kernel for node in ("n-mac", "n-comp", "n-group", "n-role", "n-site")}
    assert kernels == {"n-mac": "http://mac", "n-comp": "http://comp", "n-group": "http://g1",
                       "n-role": "http://role", "n-site": "http://site"}


async def test_a_nid_entry_sits_between_component_and_group(conn):
    await add_node(conn, "n-comp", ["00:00:00:00:00:01"], nid=1, groups=["g1"])
    await add_node(conn, "n-nid", ["00:00:00:00:00:02"], nid=2, groups=["g1"])
    await add_node(conn, "n-role", [], nid=3, role="Compute")  # no MAC: found by name or nid
    await add_node(conn, "n-site", ["00:00:00:00:00:04"], nid=4, role="Service")
    await add_node(conn, "n-none", ["00:00:00:00:00:05"], groups=["g1"])  # no NID: unaffected
    await add_node(conn, "n-other", ["00:00:00:00:00:06"], nid=6, groups=["g1"])  # a NID without an entry
    await add_params(conn, "site", kernel="http://site")
    await add_params(conn, "role", role="Compute", kernel="http://role")
    await add_params(conn, "g1", group="g1", kernel="http://g1")
    await add_params(conn, "comp", component_id="n-comp", kernel="http://comp")
    for nid in (1, 2, 3, 4, 99):
        await add_params(conn, f"nid-{nid}", nid=nid, kernel=f"http://nid{nid}")
    index = await build(conn)
    kernels = {node: index.by_id[node].kernel for node in ("n-comp", "n-nid", "n-role", "n-site", "n-none",
                                                           "n-other")}
    assert kernels == {"n-comp": "http://comp", "n-nid": "http://nid2", "n-role": "http://nid3",
                       "n-site": "http://nid4", "n-none": "http://g1", "n-other": "http://g1"}
    assert index.by_nid[3].kernel == "http://nid3" and index.by_mac["00:00:00:00:00:02"].kernel == "http://nid2"
    # A partial load of one node reads its NID's entry too.
    (answer,) = await load_answers(conn, ["n-nid"])
    assert answer.primary.kernel == "http://nid2"
    # The NID moves: its entry goes with it.
    await conn.execute("UPDATE smd.components SET nid = NULL WHERE id = 'n-nid'")
    await conn.execute("UPDATE smd.components SET nid = 2 WHERE id = 'n-other'")
    index = await build(conn)
    assert (index.by_id["n-nid"].kernel, index.by_id["n-other"].kernel) == ("http://g1", "http://nid2")


async def test_only_nodes_are_indexed_and_all_lookups_work(conn):
    await add_node(conn, "bmc-1", ["00:00:00:00:00:0b"], type="BMC")
    await add_node(conn, "n1", ["00:00:00:00:00:01", "00:00:00:00:00:02"], nid=5, ips=["10.0.0.1", "10.0.0.2"])
    index = await build(conn)
    assert len(index) == 1 and "bmc-1" not in index
    assert set(index.by_mac) == {"00:00:00:00:00:01", "00:00:00:00:00:02"}
    assert index.by_nid[5].node_id == "n1" and index.by_id["n1"].mac == "00:00:00:00:00:01"
    assert set(index.cloud_by_ip) == {"10.0.0.1", "10.0.0.2"}


async def test_cloud_init_resolution_and_instance_id(conn):
    await add_node(conn, "n1", ["00:00:00:00:00:01"], groups=["rack1"])
    await add_payload(conn, "site", user_data="#cloud-config\nsite: true\n", vendor_data="#cloud-config\nv: 1\n",
                      meta_data={"site": "s", "tier": "site"})
    await add_payload(conn, "role", role="Compute", meta_data={"tier": "role"})
    await add_payload(conn, "group", group="rack1", user_data="#cloud-config\ngroup: true\n",
                      meta_data={"local-hostname": "c001", "instance-id": "ignored"})
    await add_params(conn, "site", kernel="http://k/{{hostname}}")
    index = await build(conn)
    entry = index.cloud_by_id["n1"]
    assert entry.user_data == b"#cloud-config\ngroup: true\n"
    assert entry.vendor_data == b"#cloud-config\nv: 1\n"
    meta = msgspec.json.decode(entry.meta_data)
    assert (meta["site"], meta["tier"], meta["local-hostname"]) == ("s", "role", "c001")
    assert meta["instance-id"] == entry.instance_id != "ignored"
    assert index.by_id["n1"].values[_render.VARIABLE_NAMES.index("hostname")] == "c001"
    assert b"kernel --name kernel http://k/c001 " in index.by_id["n1"].body

    # Same data, new process: same instance-id.  Changed data: a new one.
    assert (await build(conn)).cloud_by_id["n1"].instance_id == entry.instance_id
    await conn.execute("UPDATE cloudinit.payloads SET user_data = '#cloud-config\ngroup: 2\n' WHERE id = 'group'")
    assert (await build(conn)).cloud_by_id["n1"].instance_id != entry.instance_id


async def test_partial_load_reads_only_the_named_nodes(conn):
    await add_node(conn, "n1", ["00:00:00:00:00:01"])
    await add_node(conn, "n2", ["00:00:00:00:00:02"])
    await add_params(conn, "mac2", mac="00:00:00:00:00:02", kernel="http://m2")
    await add_params(conn, "site", kernel="http://site")
    seen = []
    await loader.load(conn, lambda rows, params, payloads: seen.append((rows, params)), ["n2", "gone"])
    ((rows, params),) = seen
    assert [row["id"] for row in rows] == ["n2"]
    assert list(rows[0]["macs"]) == ["00:00:00:00:00:02"]
    assert {row["kernel"] for row in params} == {"http://m2", "http://site"}


async def test_index_replace_moves_a_mac_between_nodes(conn):
    await add_node(conn, "n1", ["00:00:00:00:00:01"], nid=1, ips=["10.0.0.1"])
    await add_node(conn, "n2", [], nid=2)
    index = await build(conn)
    await conn.execute("UPDATE smd.ethernet_interfaces SET component_id = 'n2' WHERE mac = '00:00:00:00:00:01'")
    await conn.execute("DELETE FROM smd.components WHERE id = 'n1'")
    answers = await load_answers(conn, ["n1", "n2"])
    index.replace({"n1", "n2"}, answers)
    assert index.by_mac["00:00:00:00:00:01"].node_id == "n2"
    assert "n1" not in index and 1 not in index.by_nid and index.by_nid[2].node_id == "n2"
    assert index.cloud_by_ip["10.0.0.1"].node_id == "n2"
    assert len(index) == 1


# -- user-data of several groups ----------------------------------------------------

PACKAGES_A = "#cloud-config\npackages: [htop]\nruncmd: [echo a]\ntimezone: UTC\n"
PACKAGES_B = "#cloud-config\npackages: [vim]\nruncmd: [echo b]\ntimezone: Europe/Paris\nntp: {enabled: true}\n"


def mime_parts(document: bytes) -> list:
    message = email.message_from_bytes(document, policy=email.policy.default)
    assert message.get_content_type() == "multipart/mixed"
    return [(part.get_filename(), part.get_content_type(), part["Merge-Type"],
             None if part.is_multipart() else part.get_content()) for part in message.iter_parts()]


async def test_user_data_of_several_groups_is_combined_in_name_order(conn):
    await add_node(conn, "n-two", ["00:00:00:00:00:01"], groups=["slurm", "compute"])
    await add_node(conn, "n-same", ["00:00:00:00:00:02"], groups=["compute", "slurm"])
    await add_node(conn, "n-one", ["00:00:00:00:00:03"], groups=["slurm", "plain"])
    await add_node(conn, "n-own", ["00:00:00:00:00:04"], groups=["compute", "slurm"])
    await add_node(conn, "n-role", ["00:00:00:00:00:05"], groups=["plain"])
    await add_node(conn, "n-info", ["00:00:00:00:00:06"], groups=["compute", "slurm"])
    await add_payload(conn, "info", component_id="n-info", meta_data={"region": "r1"})
    await add_payload(conn, "slurm", group="slurm", user_data=PACKAGES_B)
    await add_payload(conn, "compute", group="compute", user_data=PACKAGES_A)
    await add_payload(conn, "plain", group="plain", meta_data={"x": 1})  # meta-data only: no part
    await add_payload(conn, "own", component_id="n-own", user_data="#!/bin/sh\necho own\n")
    await add_payload(conn, "role", role="Compute", user_data="#cloud-config\nrole: true\n")
    index = await build(conn)
    combined = index.cloud_by_id["n-two"].user_data
    assert mime_parts(combined) == [
        ("compute", "text/cloud-config", userdata.MERGE_TYPE, PACKAGES_A),
        ("slurm", "text/cloud-config", userdata.MERGE_TYPE, PACKAGES_B)]
    # Resolved once per chain: the nodes of the same groups hold the same bytes object.
    assert index.cloud_by_id["n-same"].user_data is combined
    assert index.cloud_by_id["n-info"].user_data is combined  # its own meta-data does not make it a copy
    assert index.cloud_by_id["n-one"].user_data == PACKAGES_B.encode()  # one group: unchanged
    assert index.cloud_by_id["n-own"].user_data == b"#!/bin/sh\necho own\n"  # the node's own wins
    assert index.cloud_by_id["n-role"].user_data == b"#cloud-config\nrole: true\n"
    # The same data renders the same bytes (the instance-id is a digest of them).
    again = await build(conn)
    assert again.cloud_by_id["n-two"].user_data == combined
    assert again.cloud_by_id["n-two"].instance_id == index.cloud_by_id["n-two"].instance_id


def test_parts_are_typed_as_cloud_init_types_documents():
    script, jinja = "#!/bin/bash\necho é\n", "## template: jinja\n#cloud-config\na: 1\n"
    archive = "#cloud-config-archive\n- a\n"
    nested = 'Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b\n' \
             'Content-Type: text/x-shellscript\n\n#!/bin/sh\necho nested\n--b--\n'
    document = userdata.combine([("a", script), ("b", jinja), ("c", archive), ("d", nested)]).encode()
    parts = mime_parts(document)
    assert [(name, ctype, merge) for name, ctype, merge, _ in parts] == [
        ("a", "text/x-shellscript", None), ("b", "text/jinja2", userdata.MERGE_TYPE),
        ("c", "text/cloud-config-archive", None), (None, "multipart/mixed", None)]
    assert parts[0][3] == script  # non-ASCII text survives (base64 in the message)
    assert b"MIME-Version: 1.0" in document[:200]


async def test_openchami_meta_data_keys(conn):
    await add_node(conn, "x1000c1s7b0n0", ["00:00:00:00:00:01"], nid=7, ips=["10.0.0.7"], groups=["compute"])
    await add_node(conn, "named", ["00:00:00:00:00:02"], nid=8)
    await add_node(conn, "no-nid", ["00:00:00:00:00:03"])
    await add_payload(conn, "site", meta_data={
        "cluster-name": "demo", "short-name": "nid", "nid-length": 3, "cloud_provider": "openchami",
        "region": "r1", "availability-zone": "az1", "public-keys": ["ssh-ed25519 AAAA site"],
        "base-url": "http://demo/cloud-init"})
    await add_payload(conn, "compute", group="compute", meta_data={"slurm": "head"})
    await conn.execute("UPDATE cloudinit.payloads SET description = 'The compute group' WHERE id = 'compute'")
    await add_payload(conn, "named", component_id="named", meta_data={
        "local-hostname": "login1", "public-keys": ["ssh-ed25519 BBBB own"], "cloud-provider": "mine"})
    await add_params(conn, "site", kernel="http://k/vmlinuz", cmdline="hostname={{hostname}}")
    index = await build(conn)
    meta = msgspec.json.decode(index.cloud_by_id["x1000c1s7b0n0"].meta_data)
    assert (meta["local-hostname"], meta["hostname"], meta["cluster-name"]) == ("nid007", "nid007", "demo")
    assert index.by_id["x1000c1s7b0n0"].values[_render.VARIABLE_NAMES.index("hostname")] == "nid007"
    assert b" hostname=nid007 " in index.by_id["x1000c1s7b0n0"].body
    assert (meta["cloud-provider"], meta["region"], meta["availability-zone"]) == ("openchami", "r1", "az1")
    assert meta["public-keys"] == ["ssh-ed25519 AAAA site"]
    assert meta["component-id"] == "x1000c1s7b0n0" and meta["nid"] == 7  # Chamicore's own keys stay
    assert meta["instance_data"] == {"v1": {
        "availability_zone": "az1", "cloud_provider": "openchami", "region": "r1", "local_ipv4": "10.0.0.7",
        "public_keys": ["ssh-ed25519 AAAA site"],
        "vendor_data": {"version": "1.0", "cloud_init_base_url": "http://demo/cloud-init", "cluster_name": "demo",
                        "groups": {"compute": {"Description": "The compute group", "slurm": "head"}}}}}
    named = msgspec.json.decode(index.cloud_by_id["named"].meta_data)
    # A node's own name wins; its own keys add to the cluster's.
    assert (named["local-hostname"], named["hostname"], named["cloud-provider"]) == ("login1", "login1", "mine")
    assert named["public-keys"] == ["ssh-ed25519 AAAA site", "ssh-ed25519 BBBB own"]
    assert named["instance_data"]["v1"]["vendor_data"]["groups"] == {}
    assert msgspec.json.decode(index.cloud_by_id["no-nid"].meta_data)["local-hostname"] == "no-nid"


@pytest.mark.cloudinit
async def test_cloud_init_merges_the_group_parts(conn):
    """Debian's cloud-init reads the combined user-data as one config: lists add up, the first group keeps its
    plain values."""
    await add_node(conn, "n1", ["00:00:00:00:00:01"], groups=["compute", "slurm"])
    await add_payload(conn, "compute", group="compute", user_data=PACKAGES_A)
    await add_payload(conn, "slurm", group="slurm", user_data=PACKAGES_B)
    document = (await build(conn)).cloud_by_id["n1"].user_data
    result = run_cloud_init_process(MERGE_PARTS, document.decode())
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)
    assert merged["types"] == ["text/cloud-config", "text/cloud-config"]
    assert merged["config"] == {"packages": ["htop", "vim"], "runcmd": ["echo a", "echo b"], "timezone": "UTC",
                                "ntp": {"enabled": True}}


# cloud-init's user-data processor and cloud-config handler, as its init stage runs them.
MERGE_PARTS = """
import json, sys
from cloudinit import handlers, helpers, user_data, util
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
paths = helpers.Paths({})
message = user_data.UserDataProcessor(paths).process(sys.argv[1].encode())
handler = CloudConfigPartHandler(paths)
handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
types = []
for part in message.walk():
    if part.get_content_maintype() == "multipart":
        continue
    types.append(part.get_content_type())
    if part.get_content_type() == "text/cloud-config":
        handler.handle_part(None, part.get_content_type(), part.get_filename(), util.fully_decoded_payload(part),
                            None, dict(part))
print(json.dumps({"types": types, "config": handler.cloud_buf}))
"""
