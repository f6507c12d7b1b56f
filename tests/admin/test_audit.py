"""The audit records the status actually sent, whatever produced it: the handler, a problem, or an
exception handler mapping a database error (a unique-key clash is 409, not the 500 it once was)."""


async def audited(api, action: str) -> list[tuple[str, int, str]]:
    entries = (await api.get("/auth/v1/audit", params={"action": action, "limit": 50})).json()
    return [(e["actor"], e["status"], e["outcome"]) for e in entries]


async def test_a_create_is_audited_201_and_a_refused_body_422(api):
    created = await api.post("/hsm/v2/State/Components", json={"metadata": {"id": "n1"}, "spec": {"type": "Node"}})
    assert created.status_code == 201, created.text
    refused = await api.post("/hsm/v2/State/Components", json={"spec": {"type": "Bad"}})
    assert refused.status_code == 422, refused.text
    entries = await audited(api, "POST /hsm/v2/State/Components")
    assert ("test-admin", 201, "success") in entries
    assert ("test-admin", 422, "failure") in entries


async def test_a_unique_key_clash_is_audited_with_the_409_sent(api):
    # Two new nodes whose interfaces take the same explicit id: no check before the INSERT sees it, the
    # database refuses it, and the app's handler for asyncpg.UniqueViolationError answers 409.
    items = [{"id": f"clash-{i}", "networkInterfaces": [{"id": "eth-same", "macAddr": f"02:00:00:00:00:0{i}"}]}
             for i in (1, 2)]
    response = await api.post("/hsm/v2/import", json=items)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "conflicts with an existing entry" in response.json()["detail"]
    assert await audited(api, "POST /hsm/v2/import") == [("test-admin", 409, "failure")]


async def test_a_refused_token_is_audited_401_as_anonymous(anonymous, api):
    response = await anonymous.delete("/hsm/v2/State/Components/n1")
    assert response.status_code == 401
    assert ("anonymous", 401, "denied") in await audited(api, "DELETE /hsm/v2/State/Components/{id}")


async def test_reads_are_not_audited(api):
    assert (await api.get("/hsm/v2/State/Components")).status_code == 200
    assert await audited(api, "GET /hsm/v2/State/Components") == []
