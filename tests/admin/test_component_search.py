"""GET /hsm/v2/State/Components?q=: text search over ids and MACs (by their start, any spelling) and IP addresses."""

from tests.helpers.api import create, problem_of

BASE = "/hsm/v2/State/Components"


def node(component_id: str, mac: str, ip: str) -> dict:
    return {"metadata": {"id": component_id}, "spec": {"type": "Node", "state": "Ready", "networkInterfaces": [
        {"macAddr": mac, "ipAddrs": [{"ipAddress": ip, "network": "mgmt"}]}]}}


async def found(api, **query) -> list[str]:
    answer = await api.get(BASE, params=query)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    ids = [item["metadata"]["id"] for item in body["items"]]
    assert body["metadata"]["total"] == len(ids)
    return ids


async def test_search_by_id_mac_and_ip(api):
    await create(api, BASE, node("x1000c0s0b0n0", "aa:bb:cc:00:00:01", "10.1.0.1"))
    await create(api, BASE, node("x1000c0s1b0n0", "aa:bb:cc:00:00:12", "10.1.0.11"))
    await create(api, BASE, node("login-1", "de:ad:be:ef:00:03", "10.1.0.100"))

    assert await found(api, q="X1000C0S1") == ["x1000c0s1b0n0"]             # the start of an id, any case
    assert await found(api, q="x1000", sort="id") == ["x1000c0s0b0n0", "x1000c0s1b0n0"]
    assert await found(api, q="c0s1") == []                                 # not the middle of one
    assert await found(api, q="AA-BB-CC-00-00-12") == ["x1000c0s1b0n0"]    # a MAC in another spelling
    assert await found(api, q="DEAD.BE") == ["login-1"]                     # the start of a MAC
    assert await found(api, q="aabbcc00", sort="id") == ["x1000c0s0b0n0", "x1000c0s1b0n0"]
    assert await found(api, q="10.1.0.1") == ["x1000c0s0b0n0"]              # an IP address is exact
    for nothing in ("%", "~", "\U0010ffff", "é"):
        assert await found(api, q=nothing) == []
    # With the other filters, and the total counts the matches only.
    assert await found(api, q="x1000", state="Off") == []
    problem_of(await api.get(BASE, params={"q": "n" * 256}), 400)


async def test_each_part_of_a_search_is_an_index_range(conn):
    """At 100k nodes a search must not read every component or interface (plans of the query `q` builds)."""
    from admin_api.collection import Where
    from admin_api.smd.components import search

    await conn.execute("SET enable_seqscan = off")
    for text, indexes in (("aa:bb", ("components_id_search_idx", "ethernet_interfaces_mac_search_idx")),
                          ("10.0.0.1", ("components_id_search_idx", "ethernet_interfaces_ip_addrs_idx"))):
        where = Where()
        search(where, text)
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN SELECT count(*) FROM smd.components{where}",
                                                          *where.args))
        assert all(index in plan for index in indexes), plan
