"""GET /hsm/v2/State/Components?q=: text search over ids, MACs (any spelling, or a part) and IP addresses."""

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

    assert await found(api, q="C0S1") == ["x1000c0s1b0n0"]                  # id, any case
    assert await found(api, q="x1000", sort="id") == ["x1000c0s0b0n0", "x1000c0s1b0n0"]
    assert await found(api, q="AA-BB-CC-00-00-12") == ["x1000c0s1b0n0"]    # a MAC in another spelling
    assert await found(api, q="beef") == ["login-1"]                        # part of a MAC
    assert await found(api, q="10.1.0.1") == ["x1000c0s0b0n0"]              # an IP address is exact
    assert await found(api, q="n_1") == []                                  # `_` is no wildcard
    assert await found(api, q="%") == []
    # With the other filters, and the total counts the matches only.
    assert await found(api, q="x1000", state="Off") == []
    problem_of(await api.get(BASE, params={"q": "n" * 256}), 400)


async def test_search_plan_uses_the_ip_index(conn):
    """At 100k nodes an IP address must not read every interface's addresses."""
    await conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in await conn.fetch(
        "EXPLAIN SELECT component_id FROM smd.ethernet_interfaces "
        "WHERE ip_addrs @> jsonb_build_array(jsonb_build_object('ipAddress', '10.0.0.1'::text))"))
    assert "ethernet_interfaces_ip_addrs_idx" in plan
