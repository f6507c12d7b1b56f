"""Bad input gets a clear 4xx problem and changes nothing."""

import base64
import json
import re
from urllib.parse import quote

import pytest

from tests.helpers.api import NODE, create, problem_of

BASE = "/hsm/v2/State/Components"


async def count(conn):
    return await conn.fetchval("SELECT (SELECT count(*) FROM smd.components) + (SELECT count(*) FROM events.outbox)")


@pytest.mark.parametrize(("body", "field"), [
    ({"spec": {"type": "Node", "nid": "one"}}, "$.spec.nid"),
    ({"spec": {"type": "Toaster"}}, "$.spec.type"),
    ({"spec": {"type": "Node", "state": "on"}}, "$.spec.state"),
    ({"spec": {"type": "Node", "colour": "red"}}, "$.spec"),
    ({"spec": {"type": "Node"}, "extra": 1}, "$"),
    ({"metadata": {"id": "bad id!"}, "spec": {"type": "Node"}}, "$.metadata.id"),
    ({"metadata": {"id": "-x"}, "spec": {"type": "Node"}}, "$.metadata.id"),
    ({"spec": {"type": "Node", "nid": -4}}, "$.spec.nid"),
    ({"spec": {"type": "Node", "parentId": "ghost"}}, "$.spec.parentId"),
    ({"spec": {"type": "Node", "networkInterfaces": [{"macAddr": "zz:zz"}]}}, "$.spec.networkInterfaces[0].macAddr"),
    ({"spec": {"type": "Node", "networkInterfaces": [{"macAddr": "aa:bb:cc:dd:ee:ff", "ipAddrs": [
        {"ipAddress": "300.1.1.1"}]}]}}, "$.spec.networkInterfaces[0].ipAddrs[0].ipAddress"),
    ({"spec": {"type": "Node", "networkInterfaces": [{"macAddr": "aa:bb:cc:dd:ee:ff"},
                                                      {"macAddr": "AABBCCDDEEFF"}]}}, "$.spec.networkInterfaces[1]"),
    ({"spec": {"type": "Node", "arch": "x86 64; rm -rf"}}, "$.spec.arch"),
    ([1, 2], "$"),
    ({"spec": "Node"}, "$.spec"),
])
async def test_invalid_bodies_are_422_with_the_field(api, conn, body, field):
    before = await count(conn)
    problem = problem_of(await api.post(BASE, json=body), 422)
    assert problem["errors"][0]["field"].startswith(field), problem
    assert problem["errors"][0]["detail"]
    assert await count(conn) == before


async def test_malformed_json_is_400(api, conn):
    for raw in (b"{", b"not json", b'{"spec": {"type": "Node",}}', b"\xff\xfe", b""):
        problem_of(await api.post(BASE, content=raw, headers={"Content-Type": "application/json"}), 400)
    assert await count(conn) == 0


async def test_wrong_content_type_is_415(api):
    problem_of(await api.post(BASE, content=json.dumps(NODE), headers={"Content-Type": "text/plain"}), 415)
    problem_of(await api.post(BASE, content=json.dumps(NODE)), 415)


async def test_oversized_body_is_413(api, conn):
    big = {"spec": {"type": "Node", "subRole": "x" * (2 << 20)}}
    problem_of(await api.post(BASE, json=big), 413)

    async def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(40):
            yield b" " * 65536

    problem_of(await api.post(BASE, content=chunks(), headers={"Content-Type": "application/json"}), 413)
    assert await count(conn) == 0


async def test_deep_nesting_and_unicode_garbage(api, conn):
    deep = "[" * 100_000 + "]" * 100_000
    response = await api.post("/cloud-init/payloads", content=f'{{"spec": {{"metaData": {{"a": {deep}}}}}}}',
                              headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    for garbage in ("nöde-1", "node\u0000x", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "💥💥"):
        response = await api.post(BASE, json={"metadata": {"id": garbage}, "spec": {"type": "Node"}})
        problem_of(response, 422)
        problem_of(await api.get(f"{BASE}/{quote(garbage, safe='')}"), 404)
    response = await api.get("/hsm/v2/Inventory/EthernetInterfaces?mac=%F0%9F%92%A5")
    problem_of(response, 400)
    assert await count(conn) == 0


async def test_unknown_routes_and_methods_are_problems(api):
    problem_of(await api.get("/hsm/v2/nothing"), 404)
    problem_of(await api.delete(BASE), 405)


async def test_put_with_mismatched_id_changes_nothing(api):
    created = await create(api, BASE, NODE)
    body = {"metadata": {"id": "other"}, "spec": created["spec"]}
    problem_of(await api.put(f"{BASE}/node-1", json=body, headers={"If-Match": created["metadata"]["etag"]}), 422)


# Classes of bad input that once gave a 500, tried on every operation they fit (found from the route table).

def _operations():
    from admin_api.app import ROUTERS

    return [op for router in ROUTERS for op in router.operations]


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", template)


@pytest.mark.parametrize("value", ["--5", "--1", "-", "+-3", "1-1", "0x10", "\u0663", "9" * 13, ""])
async def test_malformed_paging_numbers_are_400_on_every_list(api, value):
    paged = [op for op in _operations() if {"limit", "offset"} & {p.name for p in op.params}]
    assert len(paged) > 5
    for op in paged:
        for name in sorted({"limit", "offset"} & {p.name for p in op.params}):
            response = await api.request(op.method, f"{_path(op.path)}?{name}={quote(value)}")
            assert response.status_code in (400, 404), (op.path, name, response.text)


async def test_deeply_nested_bodies_are_4xx_on_every_operation_that_takes_one(api, conn):
    before = await count(conn)
    deep = '{"spec": ' + '{"a": ' * 200 + "{}" + "}" * 200 + "}"
    for op in _operations():
        if op.request is None:
            continue
        response = await api.request(op.method, _path(op.path), content=deep,
                                     headers={"Content-Type": op.content_types[0], "If-Match": "*"})
        assert 400 <= response.status_code < 500, (op.method, op.path, response.text)
    assert await count(conn) == before


def _segment(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("issuer", [["http://idp"], {"url": "http://idp"}, 7, None, True])
async def test_token_exchange_claims_that_are_not_strings_are_400(anonymous, issuer):
    token = ".".join((_segment({"alg": "RS256", "kid": "k1"}),
                      _segment({"iss": issuer, "sub": "alice", "aud": "chamicore", "exp": 4102444800}), "c2ln"))
    response = await anonymous.post("/auth/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": token})
    assert problem_of(response, 400)["title"] == "invalid_grant"
