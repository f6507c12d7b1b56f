"""Boot-parameter and cloud-init resolution, from rows in a real database."""

import msgspec

from hotpath import _render, loader
from hotpath.answers import AnswerBuilder
from hotpath.index import Index
from tests.helpers.seed import add_node, add_params, add_payload


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
    index = await build(conn)
    entry = index.cloud_by_id["n1"]
    assert entry.user_data == b"#cloud-config\ngroup: true\n"
    assert entry.vendor_data == b"#cloud-config\nv: 1\n"
    meta = msgspec.json.decode(entry.meta_data)
    assert (meta["site"], meta["tier"], meta["local-hostname"]) == ("s", "role", "c001")
    assert meta["instance-id"] == entry.instance_id != "ignored"
    assert index.by_id["n1"].values[_render.VARIABLE_NAMES.index("hostname")] == "c001"

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
