"""SMD's /groups through the OpenCHAMI face, as `ochami smd group ...` and `discover static` send them:
no Content-Type, ochami's User-Agent, one request per group or member; answers read as ochami reads them."""

import json

from tests.helpers.api import create, problem_of
from tests.helpers.tokens import token_for

GROUPS = "/openchami/hsm/v2/groups"
AGENT = {"User-Agent": "ochami/0.5.0"}
NODES = ("x1000c1s7b0n0", "x1000c1s7b1n0", "node-3")


async def send(client, method, path, body=None, **kwargs):
    """A request as ochami builds it: JSON bytes with no Content-Type."""
    content = json.dumps(body).encode() if body is not None else None
    return await client.request(method, path, content=content, headers={**AGENT, **kwargs.pop("headers", {})},
                                **kwargs)


async def nodes(api, ids=NODES):
    for node_id in ids:
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": node_id}, "spec": {"type": "Node"}})


async def outbox(conn, event_type):
    return [r["subject"] for r in await conn.fetch("SELECT subject FROM events.outbox WHERE type = $1 ORDER BY seq",
                                                   event_type)]


async def test_a_group_from_discover_static_reads_back_as_ochami_parses_it(api, conn):
    await nodes(api)
    assert (await api.get(GROUPS)).json() == []  # `[]`, not null, when there is none
    created = await send(api, "POST", GROUPS, {"label": "Compute", "description": "The compute group",
                                               "members": {"ids": ["X1000C01S7B0N0", "x1000c1s7b1n0"]}})
    assert created.status_code == 201, created.text
    assert created.json() == [{"URI": "/hsm/v2/groups/compute"}]
    assert created.headers["location"] == "/openchami/hsm/v2/groups/compute"
    # Tags and exclusiveGroup are left out when empty, as SMD does.
    assert (await api.get(GROUPS)).json() == [{"label": "compute", "description": "The compute group",
                                               "members": {"ids": ["x1000c1s7b0n0", "x1000c1s7b1n0"]}}]
    # The native API sees the same group, and its event went out as for a native create.
    native = (await api.get("/hsm/v2/groups/compute")).json()["spec"]
    assert native["members"] == ["x1000c1s7b0n0", "x1000c1s7b1n0"] and native["description"] == "The compute group"
    assert await outbox(conn, "chamicore.smd.groups.created") == ["compute"]

    body = problem_of(await send(api, "POST", GROUPS, {"label": "compute", "members": {"ids": []}}), 409)
    assert "compute" in body["detail"]


async def test_labels_tags_and_filters(api):
    await nodes(api)
    created = await send(api, "POST", GROUPS, {"label": "io", "description": "", "tags": ["HPC", "Blue"],
                                               "members": {"ids": ["node-3"]}})
    assert created.status_code == 201, created.text
    await send(api, "POST", GROUPS, {"label": "login", "members": {"ids": ["x1000c1s7b0n0"]}})
    got = (await send(api, "GET", GROUPS + "/io")).json()
    assert got == {"label": "io", "description": "", "tags": ["hpc", "blue"], "members": {"ids": ["node-3"]}}
    assert [g["label"] for g in (await api.get(GROUPS + "?TAG=HPC")).json()] == ["io"]
    assert [g["label"] for g in (await api.get(GROUPS + "?group=login&group=io")).json()] == ["io", "login"]
    assert [g["label"] for g in (await api.get(GROUPS + "?tag=none")).json()] == []
    problem_of(await api.get(GROUPS + "?tag=no%20spaces"), 400)
    problem_of(await api.get(GROUPS + "?colour=blue"), 400)  # a misspelt filter does not list everything


async def test_bad_groups_are_refused_and_change_nothing(api, conn):
    await nodes(api)
    for body in ({"label": "bad label!"}, {"label": "a"}, {"label": "has:colon"}, {"description": "no label"},
                 {"label": "ghosts", "members": {"ids": ["x1000c1s7b0n0", "x9c0s0b0n0"]}},
                 {"label": "twice", "members": {"ids": ["node-3", "node-3"]}},
                 {"label": "tagged", "tags": ["no spaces"]}, {"label": "tagged", "tags": "hpc"},
                 {"label": "listed", "members": ["node-3"]}, {"label": "bell", "description": "ding\u0007"},
                 ["not", "an", "object"]):
        problem_of(await send(api, "POST", GROUPS, body), 400)
    problem_of(await send(api, "POST", GROUPS, None), 400)
    assert (await api.get(GROUPS)).json() == []
    assert await conn.fetchval("SELECT count(*) FROM smd.groups") == 0


async def test_patch_changes_description_and_tags_only(api, conn):
    await nodes(api)
    await send(api, "POST", GROUPS, {"label": "compute", "description": "old", "members": {"ids": ["node-3"]}})
    # discover static --overwrite PATCHes the whole group body after a 409: the members stay.
    patched = await send(api, "PATCH", GROUPS + "/compute", {"label": "compute", "description": "The compute group",
                                                             "tags": ["Rack1"],
                                                             "members": {"ids": ["x1000c1s7b0n0"]}})
    assert patched.status_code == 204 and patched.content == b""
    assert (await api.get(GROUPS + "/compute")).json() == {
        "label": "compute", "description": "The compute group", "tags": ["rack1"], "members": {"ids": ["node-3"]}}
    assert (await send(api, "PATCH", GROUPS + "/compute", {"tags": []})).status_code == 204
    assert "tags" not in (await api.get(GROUPS + "/compute")).json()
    assert await outbox(conn, "chamicore.smd.groups.updated") == ["compute", "compute"]
    problem_of(await send(api, "PATCH", GROUPS + "/compute", {}), 400)
    problem_of(await send(api, "PATCH", GROUPS + "/compute", {"tags": ["bad tag"]}), 400)
    problem_of(await send(api, "PATCH", GROUPS + "/nowhere", {"description": "x"}), 404)
    assert (await api.get(GROUPS + "/compute")).json()["description"] == "The compute group"


async def test_members_one_request_at_a_time(api, conn):
    await nodes(api)
    await send(api, "POST", GROUPS, {"label": "compute", "members": {"ids": ["x1000c1s7b0n0"]}})
    members = GROUPS + "/compute/members"
    assert (await api.get(members)).json() == {"ids": ["x1000c1s7b0n0"]}
    added = await send(api, "POST", members, {"id": "X1000C1S7B1N0"})
    assert added.status_code == 201, added.text
    assert added.json() == [{"URI": "/hsm/v2/groups/compute/members/x1000c1s7b1n0"}]
    problem_of(await send(api, "POST", members, {"id": "x1000c1s7b1n0"}), 409)
    problem_of(await send(api, "POST", members, {"id": "x9c0s0b0n0"}), 400)
    problem_of(await send(api, "POST", GROUPS + "/nowhere/members", {"id": "node-3"}), 404)
    assert (await api.get(members)).json() == {"ids": ["x1000c1s7b0n0", "x1000c1s7b1n0"]}

    # smd group member set: PUT replaces the list.
    replaced = await send(api, "PUT", members, {"group": "compute", "ids": ["node-3", "x1000c1s7b0n0"]})
    assert replaced.status_code == 201, replaced.text
    assert replaced.json() == [{"URI": "/hsm/v2/groups/compute/members/node-3"},
                               {"URI": "/hsm/v2/groups/compute/members/x1000c1s7b0n0"}]
    assert (await api.get(members)).json() == {"ids": ["node-3", "x1000c1s7b0n0"]}
    problem_of(await send(api, "PUT", members, {"group": "other", "ids": []}), 400)
    problem_of(await send(api, "PUT", members, {"ids": ["ghost-node"]}), 400)
    assert (await api.get(members)).json() == {"ids": ["node-3", "x1000c1s7b0n0"]}

    deleted = await send(api, "DELETE", members + "/node-3")
    assert deleted.status_code == 200 and deleted.json() == {"code": 0, "message": "deleted 1 entry"}
    problem_of(await send(api, "DELETE", members + "/node-3"), 404)
    emptied = await send(api, "PUT", members, {"group": "compute", "ids": []})
    assert emptied.status_code == 204
    assert (await api.get(members)).json() == {"ids": []}
    assert await outbox(conn, "chamicore.smd.groups.member-added") == ["compute"]
    assert await outbox(conn, "chamicore.smd.groups.member-removed") == ["compute"]

    gone = await send(api, "DELETE", GROUPS + "/compute")
    assert gone.status_code == 200 and gone.json() == {"code": 0, "message": "deleted 1 entry"}
    problem_of(await api.get(GROUPS + "/compute"), 404)
    problem_of(await send(api, "DELETE", GROUPS + "/compute"), 404)
    # The members are components: they stay.
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 3


async def test_an_exclusive_group_is_a_partition(api):
    await nodes(api)
    created = await send(api, "POST", GROUPS, {"label": "p1", "description": "", "exclusiveGroup": "Colors",
                                               "members": {"ids": ["x1000c1s7b0n0"]}})
    assert created.status_code == 201, created.text
    assert (await api.get("/hsm/v2/partitions/p1")).json()["spec"]["members"] == ["x1000c1s7b0n0"]
    assert (await api.get(GROUPS + "/p1")).json() == {"label": "p1", "description": "", "exclusiveGroup": "partitions",
                                                      "members": {"ids": ["x1000c1s7b0n0"]}}
    # A component is in one partition at most, whatever set name the client gives: 409, nothing written.
    problem_of(await send(api, "POST", GROUPS, {"label": "p2", "exclusiveGroup": "sizes",
                                                "members": {"ids": ["x1000c1s7b0n0"]}}), 409)
    problem_of(await api.get(GROUPS + "/p2"), 404)
    assert (await send(api, "POST", GROUPS, {"label": "p2", "exclusiveGroup": "colors"})).status_code == 201
    problem_of(await send(api, "POST", GROUPS + "/p2/members", {"id": "x1000c1s7b0n0"}), 409)
    problem_of(await send(api, "PUT", GROUPS + "/p2/members", {"ids": ["x1000c1s7b0n0"]}), 409)
    assert (await send(api, "POST", GROUPS + "/p2/members", {"id": "node-3"})).status_code == 201
    problem_of(await send(api, "POST", GROUPS, {"label": "p3", "exclusiveGroup": "not valid!"}), 400)

    # An ordinary group may share members with a partition; ?partition= filters members by partition.
    await send(api, "POST", GROUPS, {"label": "all", "members": {"ids": list(NODES)}})
    by_partition = {g["label"]: g["members"]["ids"] for g in (await api.get(GROUPS + "?partition=p1")).json()}
    assert by_partition == {"all": ["x1000c1s7b0n0"], "p1": ["x1000c1s7b0n0"], "p2": []}
    unpartitioned = (await api.get(GROUPS + "/all?partition=NULL")).json()["members"]["ids"]
    assert unpartitioned == ["x1000c1s7b1n0"]
    assert (await api.get(GROUPS + "/all/members?partition=p2")).json() == {"ids": ["node-3"]}

    # Deleting a partition frees its members for another one.
    assert (await send(api, "DELETE", GROUPS + "/p1")).status_code == 200
    assert (await send(api, "POST", GROUPS + "/p2/members", {"id": "x1000c1s7b0n0"})).status_code == 201


async def test_reads_need_a_token_and_writes_need_write_smd(api, anonymous, dsn):
    await nodes(api)
    viewer = {"Authorization": "Bearer " + await token_for(anonymous, dsn, "group-viewer", ["viewer"])}
    await send(api, "POST", GROUPS, {"label": "compute", "members": {"ids": ["node-3"]}})
    assert (await anonymous.get(GROUPS)).status_code == 401
    assert (await anonymous.get(GROUPS, headers=viewer)).json()[0]["label"] == "compute"
    refused = [await send(anonymous, method, path, body, headers=viewer) for method, path, body in (("POST", GROUPS, {"label": "other"}),
                                          ("PATCH", GROUPS + "/compute", {"description": "x"}),
                                          ("POST", GROUPS + "/compute/members", {"id": "x1000c1s7b0n0"}),
                                          ("PUT", GROUPS + "/compute/members", {"ids": []}),
                                          ("DELETE", GROUPS + "/compute/members/node-3", None),
                                          ("DELETE", GROUPS + "/compute", None))]
    for response in refused:
        assert problem_of(response, 403)["detail"].count("write:smd") == 1
    assert (await api.get(GROUPS + "/compute")).json()["members"] == {"ids": ["node-3"]}
