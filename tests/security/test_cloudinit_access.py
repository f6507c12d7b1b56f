"""Finding 7: a node's cloud-init (user-data often holds secrets) goes to that node only.

By id, the boot path answers a requester that proves it is the node: it asks
from one of the node's addresses (X-Forwarded-For only through
CHAMICORE_TRUSTED_PROXIES), or it holds the node's secret seed token, which
only the node's own boot script (asked for by its MAC) carries in
`ds=nocloud-net;s=<boot URL>/cloud-init/<id>/<token>/`.  A script asked for
by name or nid, which anyone can ask for, carries neither the token nor the
MAC that would lead to it.  Anyone else gets a 404 problem and no data.
"""

import re

import msgspec
import pytest

from hotpath import _dispatch, _dispatch_py
from hotpath.answers import AnswerBuilder
from hotpath.index import Index
from tests.helpers.api import NODE, create, problem_of
from tests.helpers.polling import wait_until
from tests.helpers.seed import add_node, add_params, add_payload

TOKEN_1 = "0123456789abcdef0123456789abcdef"
TOKEN_2 = "fedcba9876543210fedcba9876543210"
SECRET = "#cloud-config\nchpasswd: {list: 'root:hunter2'}\n"
SEED_RE = re.compile(r"ds=nocloud-net;s=(\S+)")


def row(node_id, nid, mac, ip, token):
    return {"id": node_id, "type": "Node", "role": "Compute", "sub_role": "", "nid": nid, "arch": "x86_64",
            "enabled": True, "rack": "R1", "unit": nid, "slot": 0, "sub_slot": 0, "groups": [],
            "macs": [mac], "ip_addrs": [[{"ipAddress": ip}]], "cloud_init_token": token}


NODES = [row("node-1", 1, "aa:bb:cc:00:00:01", "10.1.0.1", TOKEN_1),
         row("node-2", 2, "aa:bb:cc:00:00:02", "10.1.0.2", TOKEN_2)]
PARAMS = [{"mac": None, "component_id": None, "group_name": None, "role": None, "kernel": "http://k/vmlinuz",
           "initrd": "", "cmdline": "console=ttyS0 mac={{mac}}"}]
PAYLOADS = [{"component_id": "node-1", "group_name": None, "role": None, "user_data": SECRET,
             "meta_data": {"site": "s1"}, "vendor_data": SECRET}]


@pytest.fixture(params=["compiled", "twin"])
def dispatcher(request):
    module = _dispatch if request.param == "compiled" else _dispatch_py
    index = Index.from_answers(AnswerBuilder(None, 2.0, 60.0).batch()(NODES, PARAMS, PAYLOADS))
    return module.Dispatcher(index, None, "http://boot:1", 2.0, 60.0, 10)


def ask(dispatcher, path: str, client_ip: str) -> tuple:
    """What the app does: dispatch, and resolve by the requester's address when asked to."""
    answer = dispatcher.dispatch(path, "", "boot:1")
    if answer[5] == _dispatch.OUT_NEEDS_CLIENT_IP:
        answer = dispatcher.cloud_init_by_ip(client_ip, path)
    return answer


def assert_nothing(answer) -> None:
    status, ct, body, node_id, *_ = answer
    assert (status, ct, node_id) == (404, _dispatch.CT_PROBLEM, None), answer
    assert b"hunter2" not in body and b"instance-id" not in body
    assert msgspec.json.decode(body)["status"] == 404


@pytest.mark.parametrize("document", ["user-data", "meta-data", "vendor-data"])
def test_by_id_from_another_host_gets_nothing(dispatcher, document):
    for path in (f"/cloud-init/node-1/{document}", f"/cloud-init/node-1/{TOKEN_2}/{document}",
                 f"/cloud-init/node-1/{TOKEN_1[:-1]}/{document}", f"/cloud-init/node-1/x/{document}",
                 f"/cloud-init/node-1/{TOKEN_1.upper()}/{document}", f"/cloud-init/node-1/é/{document}"):
        for client_ip in ("10.9.9.9", "10.1.0.2", "", "127.0.0.1"):
            assert_nothing(ask(dispatcher, path, client_ip))


def test_unknown_and_refused_look_alike(dispatcher):
    refused = ask(dispatcher, "/cloud-init/node-1/user-data", "10.9.9.9")
    unknown = ask(dispatcher, "/cloud-init/node-9/user-data", "10.9.9.9")
    detail = msgspec.json.decode(unknown[2])["detail"]
    assert "node-9" in detail and msgspec.json.decode(refused[2])["detail"] == detail.replace("node-9", "node-1")


@pytest.mark.parametrize("document", ["user-data", "meta-data", "vendor-data"])
def test_the_node_itself_gets_its_data(dispatcher, document):
    by_address = ask(dispatcher, f"/cloud-init/node-1/{document}", "10.1.0.1")
    by_token = ask(dispatcher, f"/cloud-init/node-1/{TOKEN_1}/{document}", "10.9.9.9")
    by_ip_only = ask(dispatcher, f"/cloud-init/{document}", "10.1.0.1")
    assert by_address[:4] == by_token[:4] == by_ip_only[:4]
    assert by_token[0] == 200 and by_token[3] == "node-1"
    if document != "meta-data":
        assert by_token[2] == SECRET.encode()
    # A wrong token from the node's own address still gets it: the address is proof enough.
    assert ask(dispatcher, f"/cloud-init/node-1/{TOKEN_2}/{document}", "10.1.0.1")[:4] == by_token[:4]


def seed_url(body: bytes) -> str:
    found = SEED_RE.search(body.decode())
    assert found, body
    return found[1]


def test_only_the_mac_script_carries_the_token(dispatcher):
    for query in ("mac=aa:bb:cc:00:00:01", "mac=AA-BB-CC-00-00-01&retry=2"):
        body = dispatcher.dispatch("/boot/v1/bootscript", query, "boot:1")[2]
        assert seed_url(body) == f"http://boot:1/cloud-init/node-1/{TOKEN_1}/"
    for query in ("name=node-1", "nid=1", "nid=1&retry=3"):
        status, _, body, node_id, _, outcome = dispatcher.dispatch("/boot/v1/bootscript", query, "boot:1")
        assert (status, node_id, outcome) == (200, "node-1", _dispatch.OUT_OK)
        text = body.decode()
        assert TOKEN_1 not in text and "aa-bb-cc-00-00-01" not in text and "aa:bb:cc:00:00:01" not in text, text
        assert seed_url(body) == "http://boot:1/cloud-init/node-1/"
        assert f"chain http://boot:1/boot/v1/bootscript?{query.split('&')[0]}&retry=" in text


def test_prerendered_script_carries_the_token():
    index = Index.from_answers(AnswerBuilder("http://boot.example", 2.0, 60.0).batch()(NODES, PARAMS, PAYLOADS))
    for module in (_dispatch, _dispatch_py):
        dispatcher = module.Dispatcher(index, "http://boot.example", "http://x", 2.0, 60.0, 10)
        body = dispatcher.dispatch("/boot/v1/bootscript", "mac=aa:bb:cc:00:00:02", "")[2]
        assert body is index.by_mac["aa:bb:cc:00:00:02"].body
        assert seed_url(body) == f"http://boot.example/cloud-init/node-2/{TOKEN_2}/"
        assert TOKEN_2.encode() not in dispatcher.dispatch("/boot/v1/bootscript", "nid=2", "")[2]


# -- the real boot path ----------------------------------------------------


async def seed_cluster(conn):
    await add_node(conn, "node-1", ["52:54:00:00:00:01"], nid=1, ips=["10.0.0.7"])
    await add_node(conn, "node-2", ["52:54:00:00:00:02"], nid=2, ips=["127.0.0.1"])
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="console=ttyS0")
    await add_payload(conn, "n1", component_id="node-1", user_data=SECRET, meta_data={"cluster": "c"})


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_boot_path_serves_cloud_init_to_the_node_only(conn, boot_server, interface):
    await seed_cluster(conn)
    server = boot_server(interface)
    # The test client is 127.0.0.1: node-2's address, not node-1's.
    for document in ("user-data", "meta-data", "vendor-data"):
        status, headers, body = server.get(f"/cloud-init/node-1/{document}")
        assert status == 404 and headers["content-type"] == "application/problem+json"
        assert b"hunter2" not in body and b"cluster" not in body
    assert server.get("/cloud-init/node-2/meta-data")[0] == 200  # its own, by address
    # The ids anyone can learn from a by-nid script do not lead to the data.
    body = server.get("/boot/v1/bootscript?nid=1")[2]
    assert seed_url(body) == f"{server.url}/cloud-init/node-1/" and b"52-54-00-00-00-01" not in body
    assert server.get(seed_url(body).removeprefix(server.url) + "user-data")[0] == 404
    # The node's own script (by MAC) holds the seed URL that works from anywhere.
    seed = seed_url(server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2])
    assert re.fullmatch(re.escape(server.url) + r"/cloud-init/node-1/[0-9a-f]{32}/", seed), seed
    path = seed.removeprefix(server.url)
    assert server.get(path + "user-data")[2] == SECRET.encode()
    assert msgspec.json.decode(server.get(path + "meta-data")[2])["cluster"] == "c"
    # node-2's token does not open node-1.
    other = seed_url(server.get("/boot/v1/bootscript?mac=52:54:00:00:00:02")[2]).removeprefix(server.url)
    assert other != path and server.get(other.replace("node-2", "node-1") + "user-data")[0] == 404


async def test_rotation_retires_the_old_seed_url(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server()
    old = seed_url(server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2]).removeprefix(server.url)
    await conn.execute("UPDATE smd.components SET cloud_init_token = DEFAULT WHERE id = 'node-1'")
    new = wait_until(lambda: (s := seed_url(server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2])
                              .removeprefix(server.url)) != old and s)
    assert server.get(old + "user-data")[0] == 404
    assert server.get(new + "user-data")[2] == SECRET.encode()


async def test_by_id_through_trusted_proxies_only(conn, boot_server):
    await seed_cluster(conn)
    untrusted = boot_server()
    assert untrusted.get("/cloud-init/node-1/user-data", {"X-Forwarded-For": "10.0.0.7"})[0] == 404
    trusted = boot_server(CHAMICORE_TRUSTED_PROXIES="127.0.0.0/8")
    status, _, body = trusted.get("/cloud-init/node-1/user-data", {"X-Forwarded-For": "203.0.113.9, 10.0.0.7"})
    assert (status, body) == (200, SECRET.encode())
    assert trusted.get("/cloud-init/node-1/user-data", {"X-Forwarded-For": "10.0.0.8"})[0] == 404


# -- rotation through the admin API ------------------------------------------


async def test_admin_api_rotates_a_nodes_seed_token(api, anonymous, conn):
    await create(api, "/hsm/v2/State/Components", NODE)
    path = "/hsm/v2/State/Components/node-1/cloud-init-seed/rotate"
    before = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = 'node-1'")
    assert re.fullmatch(r"[0-9a-f]{32}", before)
    problem_of(await anonymous.post(path), 401)
    response = await api.post(path)
    assert response.status_code == 204, response.text
    after = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = 'node-1'")
    assert re.fullmatch(r"[0-9a-f]{32}", after) and after != before
    problem_of(await api.post("/hsm/v2/State/Components/nobody/cloud-init-seed/rotate"), 404)
    # The token is never part of what the API shows.
    assert before not in (await api.get("/hsm/v2/State/Components/node-1")).text
