"""SMD's components, Ethernet interfaces, memberships and service routes through the OpenCHAMI face, as
ochami, coresmd and cloud-init send them: no Content-Type, ochami's User-Agent, a token where ochami sends
one (reference/openchami-api.md §1.3) and none where coresmd polls; answers read field by field as those
clients parse them."""

import json

import pytest

from core.config import load_config
from tests.helpers.api import create, problem_of
from tests.helpers.keys import SECRETS
from tests.helpers.tokens import token_for

SMD = "/openchami/hsm/v2"
COMPONENTS = SMD + "/State/Components"
INTERFACES = SMD + "/Inventory/EthernetInterfaces"
AGENT = {"User-Agent": "ochami/0.5.0"}
# What `ochami discover static` posts for its nodes: Type, State, Enabled, NID; no Role, no Arch.
DISCOVERED = [{"ID": "x1000c1s7b0n0", "Type": "Node", "State": "On", "Enabled": True, "NID": 1},
              {"ID": "X1000C01S7B1N0", "Type": "Node", "State": "on", "Enabled": True, "NID": 2}]


async def send(client, method, path, body=None, **kwargs):
    """A request as ochami builds it: JSON bytes with no Content-Type."""
    content = json.dumps(body).encode() if body is not None else None
    return await client.request(method, path, content=content, headers={**AGENT, **kwargs.pop("headers", {})},
                                **kwargs)


async def sent(client, method, path, body=None, status=204):
    response = await send(client, method, path, body)
    assert response.status_code == status, response.text
    return response


async def events(conn, event_type):
    return [(r["subject"], json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]) for r in
            await conn.fetch("SELECT subject, data FROM events.outbox WHERE type = $1 ORDER BY seq", event_type)]


@pytest.fixture
async def public_app(dsn):
    """The admin API with CHAMICORE_OPENCHAMI_PUBLIC_READS on, as a site running coresmd sets it."""
    from admin_api.app import create_app

    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_OPENCHAMI_PUBLIC_READS": "true",
                                  **SECRETS}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def coresmd(public_app):
    """A client without a token against the public-reads app (coresmd, cloud-init, plain `smd component get`)."""
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=public_app), base_url="http://admin",
                                 headers={"User-Agent": "Go-http-client/1.1"}) as client:
        yield client


async def client_for(app, dsn, roles, name):
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as anonymous:
        token = await token_for(anonymous, dsn, name, roles)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                             headers={"Authorization": f"Bearer {token}"})


# -- service ------------------------------------------------------------------------------------------


async def test_service_routes_answer_without_a_token(anonymous):
    ready = await send(anonymous, "GET", SMD + "/service/ready")
    assert ready.status_code == 200 and ready.json() == {"code": 0, "message": "HSM is healthy"}
    assert (await send(anonymous, "GET", SMD + "/service/liveness")).status_code == 204
    values = (await send(anonymous, "GET", SMD + "/service/values")).json()
    assert sorted(values) == ["Arch", "Class", "Flag", "NetType", "Role", "State", "SubRole", "Type"]
    assert values["Arch"] == ["X86", "ARM", "Other", "UNKNOWN"]
    assert set(values["State"]) == {"Unknown", "Empty", "Populated", "Off", "On", "Standby", "Halt", "Ready"}
    assert {"Node", "NodeBMC", "RouterBMC", "MgmtSwitch", "Cabinet"} <= set(values["Type"])
    assert "Chassis" not in values["Type"]  # only what Chamicore can store
    for name in values:
        only = (await send(anonymous, "GET", f"{SMD}/service/values/{name.lower()}")).json()
        assert only == {name: values[name]}


async def test_ready_is_503_problem_when_the_database_does_not_answer(admin_app, anonymous):
    class DeadPool:  # a mock: the test database cannot be stopped under the other tests
        def acquire(self, timeout=None):
            raise OSError("connection refused")

    pool, admin_app.state.pool = admin_app.state.pool, DeadPool()
    try:
        response = await send(anonymous, "GET", SMD + "/service/ready")
    finally:
        admin_app.state.pool = pool
    body = problem_of(response, 503)
    assert "unhealthy" in body["detail"] and body["title"] == "Service Unavailable"


# -- components ---------------------------------------------------------------------------------------


async def test_discover_static_components_read_back_as_ochami_and_the_native_api_see_them(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    listed = (await send(api, "GET", COMPONENTS)).json()
    # SMD's Component: Flag OK, Role Compute by default for a node, NID a bare number, X86, empty fields left out.
    assert listed == {"Components": [
        {"ID": "x1000c1s7b0n0", "Type": "Node", "State": "On", "Flag": "OK", "Enabled": True, "Role": "Compute",
         "NID": 1, "Arch": "X86"},
        {"ID": "x1000c1s7b1n0", "Type": "Node", "State": "On", "Flag": "OK", "Enabled": True, "Role": "Compute",
         "NID": 2, "Arch": "X86"}]}
    one = await send(api, "GET", COMPONENTS + "/X1000C1S7B0N0")
    assert one.json() == listed["Components"][0] and one.headers["content-type"] == "application/json"
    # The native API holds the same component, its location taken from the xname.
    native = (await api.get("/hsm/v2/State/Components/x1000c1s7b1n0")).json()["spec"]
    assert native == {**native, "type": "Node", "state": "On", "role": "Compute", "nid": 2, "arch": "x86_64",
                      "enabled": True, "location": {"rack": "x1000", "unit": 1, "slot": 7, "subSlot": 0}}
    # ... and its event is the one a native create writes.
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-9"}, "spec": {
        "type": "Node", "state": "On", "role": "Compute", "nid": 9,
        "location": {"rack": "x1000", "unit": 1, "slot": 7, "subSlot": 0}}})
    created = dict(await events(conn, "chamicore.smd.components.created"))
    assert list(created) == ["x1000c1s7b0n0", "x1000c1s7b1n0", "node-9"]
    assert created["x1000c1s7b1n0"] == {**created["node-9"], "nid": 2}


async def test_post_is_an_upsert_and_only_force_changes_state_and_arch(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": [{**DISCOVERED[0], "Role": "Service", "Arch": "ARM"}]})
    again = {"ID": "x1000c1s7b0n0", "State": "Off", "Role": "Storage", "NID": 7, "Arch": "X86", "Enabled": False}
    await sent(api, "POST", COMPONENTS, {"Components": [again]})  # an existing ID is not a conflict ...
    got = (await send(api, "GET", COMPONENTS + "/x1000c1s7b0n0")).json()
    assert (got["State"], got["Role"], got["NID"], got["Arch"]) == ("On", "Service", 1, "ARM")  # ... nor a change
    await sent(api, "POST", COMPONENTS, {"Components": [again], "force": True})
    got = (await send(api, "GET", COMPONENTS + "/x1000c1s7b0n0")).json()
    # force overwrites state and arch; role, NID and Enabled stay (SMD's rule).
    assert (got["State"], got["Role"], got["NID"], got["Arch"], got["Enabled"]) == ("Off", "Service", 1, "X86", True)
    assert [s for s, _ in await events(conn, "chamicore.smd.components.updated")] == ["x1000c1s7b0n0"]


async def test_discover_static_overwrite_puts_each_node_then_bulk_nids(api):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    for node, nid in (("x1000c1s7b0n0", 11), ("x1000c1s7b1n0", 12), ("x1000c1s7b2n0", 13)):
        await sent(api, "PUT", f"{COMPONENTS}/{node}", {"Component": {"ID": node, "Type": "Node", "State": "Ready",
                                                                      "Enabled": True, "NID": nid}, "Force": True})
    await sent(api, "PATCH", COMPONENTS + "/BulkNID", {"Components": [
        {"ID": "x1000c1s7b0n0", "Type": "", "NID": 11}, {"ID": "x1000c1s7b1n0", "Type": "", "NID": 12}]})
    listed = {c["ID"]: c for c in (await send(api, "GET", COMPONENTS)).json()["Components"]}
    assert {i: (c["State"], c["NID"]) for i, c in listed.items()} == {
        "x1000c1s7b0n0": ("Ready", 11), "x1000c1s7b1n0": ("Ready", 12), "x1000c1s7b2n0": ("Ready", 13)}
    by_nid = await send(api, "GET", COMPONENTS + "/ByNID/12")
    assert by_nid.status_code == 200 and by_nid.json()["ID"] == "x1000c1s7b1n0"
    assert problem_of(await send(api, "GET", COMPONENTS + "/ByNID/99"), 404)["detail"] == "no such NID."
    problem_of(await send(api, "GET", COMPONENTS + "/ByNID/x"), 400)
    # A negative NID unsets it.
    await sent(api, "PATCH", COMPONENTS + "/BulkNID", {"Components": [{"ID": "x1000c1s7b2n0", "NID": -1}]})
    assert "NID" not in (await send(api, "GET", COMPONENTS + "/x1000c1s7b2n0")).json()


async def test_bad_components_are_refused_and_change_nothing(api, conn):
    good = DISCOVERED[0]
    for body, words in (
            ({}, "Missing Components"), ({"Components": []}, "Missing Components"),
            ({"Components": [{"State": "On"}]}, "Missing Components"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "Sideways"}]}, "state 'Sideways' is invalid"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0"}]}, "state '' is invalid"),
            ({"Components": [good, {"ID": "not an xname!", "State": "On"}]}, "is invalid"),
            ({"Components": [good, {"ID": "node-7", "State": "On"}]}, "needs a Type"),
            ({"Components": [{"ID": "x1000c1", "Type": "Chassis", "State": "On"}]}, "Chassis is not supported"),
            ({"Components": [{"ID": "x1000c1s7", "State": "On"}]}, "ComputeModule is not supported"),
            ({"Components": [{"ID": "node-7", "Type": "Blade", "State": "On"}]}, "Invalid HMS type"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "On", "Role": "Boss"}]}, "role 'Boss'"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "On", "Arch": "sparc"}]}, "arch 'sparc'"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "On", "Flag": "Bad"}]}, "flag 'Bad'"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "On", "NID": "one"}]}, "NID 'one'"),
            ({"Components": [good, {"ID": "x1000c1s7b1n0", "State": "On", "NID": 1}]}, None),  # NID taken: 409
            ({"Components": [good], "force": "yes"}, "force"),
    ):
        response = await send(api, "POST", COMPONENTS, body)
        if words is None:
            problem_of(response, 409)
        else:
            assert words in problem_of(response, 400)["detail"], (body, response.text)
    problem_of(await send(api, "POST", COMPONENTS, None), 400)
    problem_of(await api.post(COMPONENTS, content=b"{not json", headers=AGENT), 400)
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == 0


async def test_a_chamicore_id_is_accepted_with_a_type_that_maps(api):
    await sent(api, "POST", COMPONENTS, {"Components": [
        {"ID": "login-1", "Type": "nodebmc", "State": "Ready"}, {"ID": "node-7", "Type": "Node", "State": "On"}]})
    native = (await api.get("/hsm/v2/State/Components/login-1")).json()["spec"]
    assert native["type"] == "BMC" and native["role"] is None
    listed = (await send(api, "GET", COMPONENTS)).json()["Components"]
    assert [(c["ID"], c["Type"], c.get("Role")) for c in listed] == [("login-1", "NodeBMC", None),
                                                                     ("node-7", "Node", "Compute")]


async def test_put_needs_the_path_and_body_ids_to_match(api, conn):
    response = await send(api, "PUT", COMPONENTS + "/x1000c1s7b0n0",
                          {"Component": {"ID": "x1000c1s7b1n0", "State": "On"}, "Force": True})
    assert "do not match" in problem_of(response, 400)["detail"]
    problem_of(await send(api, "PUT", COMPONENTS + "/x1000c1s7b0n0", {"Force": True}), 400)
    await sent(api, "PUT", COMPONENTS + "/x1000c1s7b0n0", {"component": {"id": "X1000C1S7B0N0", "state": "on"},
                                                             "force": True})  # keys in any case
    assert await conn.fetchval("SELECT state FROM smd.components WHERE id = 'x1000c1s7b0n0'") == "On"


async def test_types_follow_the_xname_and_filters_work_as_smd_s(api):
    await sent(api, "POST", COMPONENTS, {"Components": [
        *DISCOVERED, {"ID": "x1000c1s7b0", "Type": "Node", "State": "Ready"},  # the xname wins: a NodeBMC
        {"ID": "x1000c1r3b0", "State": "Ready"}, {"ID": "x1000c1w4", "State": "On"},
        {"ID": "x1000", "State": "Populated"}, {"ID": "x1000m0", "State": "On", "Arch": "UNKNOWN"}]})
    await sent(api, "POST", "/openchami/hsm/v2/groups", {"label": "compute", "members": {"ids": ["x1000c1s7b0n0"]}},
               status=201)

    async def ids(query):
        response = await send(api, "GET", f"{COMPONENTS}?{query}")
        assert response.status_code == 200, response.text
        return [c["ID"] for c in response.json()["Components"]]

    types = {c["ID"]: c["Type"] for c in (await send(api, "GET", COMPONENTS)).json()["Components"]}
    assert types == {"x1000": "Cabinet", "x1000c1r3b0": "RouterBMC", "x1000c1s7b0": "NodeBMC",
                     "x1000c1s7b0n0": "Node", "x1000c1s7b1n0": "Node", "x1000c1w4": "MgmtSwitch",
                     "x1000m0": "CabinetPDUController"}
    assert await ids("type=NodeBMC&type=routerbmc") == ["x1000c1r3b0", "x1000c1s7b0"]
    assert await ids("type=RouterBMC") == ["x1000c1r3b0"]
    assert (await send(api, "GET", COMPONENTS + "/x1000c1r3b0")).json()["Type"] == "RouterBMC"
    assert await ids("Type=node&STATE=ON") == ["x1000c1s7b0n0", "x1000c1s7b1n0"]
    assert await ids("state=Ready") == ["x1000c1r3b0", "x1000c1s7b0"]
    assert await ids("role=compute&nid=2") == ["x1000c1s7b1n0"]
    assert await ids("nid_start=2&nid_end=5") == ["x1000c1s7b1n0"]
    assert await ids("id=X1000C1S7B0N0&id=x1000") == ["x1000", "x1000c1s7b0n0"]
    assert await ids("group=Compute") == ["x1000c1s7b0n0"]
    assert await ids("partition=compute") == []
    assert await ids("arch=UNKNOWN") == ["x1000m0"]
    assert await ids("enabled=false") == []
    assert await ids("flag=ok&type=Cabinet") == ["x1000"]
    assert await ids("flag=Alert") == [] and await ids("class=River") == []
    assert await ids("type=Chassis") == []  # an SMD type no Chamicore component has
    for bad in ("state=Sideways", "type=Blade", "nid=one", "enabled=maybe", "role=Boss", "arch=sparc",
                "id=not%20an%20id", "colour=blue"):
        problem_of(await send(api, "GET", f"{COMPONENTS}?{bad}"), 400)
    # cloud-init joins paths with a trailing slash.
    assert (await send(api, "GET", COMPONENTS + "/?type=Cabinet")).json() == {"Components": [
        {"ID": "x1000", "Type": "Cabinet", "State": "Populated", "Flag": "OK", "Enabled": True, "Arch": "X86"}]}


async def test_native_values_read_back_in_openchami_spelling(api):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "gpu-1"}, "spec": {
        "type": "Node", "state": "Standby", "arch": "ppc64le", "subRole": "Worker", "enabled": False}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "arm-1"}, "spec": {
        "type": "Switch", "arch": "aarch64"}})
    listed = (await send(api, "GET", COMPONENTS)).json()["Components"]
    assert listed == [
        {"ID": "arm-1", "Type": "MgmtSwitch", "State": "Empty", "Flag": "OK", "Enabled": True, "Arch": "ARM"},
        {"ID": "gpu-1", "Type": "Node", "State": "Standby", "Flag": "OK", "Enabled": False, "SubRole": "Worker",
         "Arch": "Other"}]


async def test_delete_one_and_all(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    deleted = await send(api, "DELETE", COMPONENTS + "/x1000c1s7b0n0")
    assert deleted.status_code == 200 and deleted.json() == {"code": 0, "message": "deleted 1 entry"}
    assert problem_of(await send(api, "DELETE", COMPONENTS + "/x1000c1s7b0n0"), 404)["detail"] == "no such xname."
    assert problem_of(await send(api, "GET", COMPONENTS + "/x1000c1s7b0n0"), 404)["detail"] == "no such xname."
    problem_of(await send(api, "DELETE", COMPONENTS + "/not%20an%20xname"), 400)
    # A parent and its child (native): the child goes first, the parent after.
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "cab-1"}, "spec": {"type": "Cabinet"}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "pdu-1"}, "spec": {"type": "PDU",
                                                                                        "parentId": "cab-1"}})
    everything = await send(api, "DELETE", COMPONENTS)
    assert everything.status_code == 200 and everything.json() == {"code": 0, "message": "deleted 3 entries"}
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0
    assert len(await events(conn, "chamicore.smd.components.deleted")) == 4
    assert problem_of(await send(api, "DELETE", COMPONENTS), 404)["detail"] == "no entries to delete"


async def test_deleting_a_component_with_its_own_boot_parameters_needs_their_scope(admin_app, api, dsn, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED[:1]})
    await create(api, "/boot/v1/bootparams", {"metadata": {"id": "n0"}, "spec": {
        "componentId": "x1000c1s7b0n0", "kernel": "http://images/vmlinuz"}})
    await conn.execute("INSERT INTO auth.roles (name, scopes) VALUES ('inventory', ARRAY['read:smd', 'write:smd'])")
    async with await client_for(admin_app, dsn, ["inventory"], "inventory-bot") as inventory_only:
        # The native delete's rule: the boot parameters go with the component, so their scope is needed too.
        for path in (COMPONENTS + "/x1000c1s7b0n0", COMPONENTS):
            assert "write:bss" in problem_of(await send(inventory_only, "DELETE", path), 403)["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 1
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_params") == 1


# -- Ethernet interfaces ------------------------------------------------------------------------------

IFACE = {"ID": "", "Type": "", "ComponentID": "x1000c1s7b0n0", "MACAddress": "DE:AD:BE:EE:EE:F1",
         "Description": "Interface 0 for nid001", "IPAddresses": [{"IPAddress": "172.16.0.1", "Network": "internal"}]}


async def test_ochami_iface_add_then_get(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    created = await sent(api, "POST", INTERFACES, IFACE, status=201)
    assert created.json() == {"URI": "/hsm/v2/Inventory/EthernetInterfaces/deadbeeeeef1"}
    assert created.headers["location"] == INTERFACES + "/deadbeeeeef1"
    await sent(api, "POST", INTERFACES, {"ComponentID": "x1000c1s7b1n0", "MACAddress": "de-ad-be-ee-ee-f2",
                                         "IPAddresses": [{"IPAddress": "172.16.0.2"}, {"IPAddress": "10.1.0.2",
                                                                                       "Network": "hsn"}]}, status=201)
    listed = (await send(api, "GET", INTERFACES)).json()
    assert isinstance(listed, list)
    first = next(i for i in listed if i["ID"] == "deadbeeeeef1")
    assert first == {"ID": "deadbeeeeef1", "Description": "Interface 0 for nid001", "MACAddress": "de:ad:be:ee:ee:f1",
                     "LastUpdate": first["LastUpdate"], "ComponentID": "x1000c1s7b0n0", "Type": "Node",
                     "IPAddresses": [{"IPAddress": "172.16.0.1", "Network": "internal"}]}
    assert first["LastUpdate"].endswith("Z") and first["LastUpdate"][10] == "T"
    second = next(i for i in listed if i["ID"] == "deadbeeeeef2")
    assert second["IPAddresses"] == [{"IPAddress": "172.16.0.2"}, {"IPAddress": "10.1.0.2", "Network": "hsn"}]
    # `smd iface get --id` (token) prints the raw body; by id, in any case, or by MAC.
    for name in ("deadbeeeeef1", "DEADBEEEEEF1", "de:ad:be:ee:ee:f1"):
        one = await send(api, "GET", f"{INTERFACES}/{name}")
        assert one.status_code == 200 and one.json() == first
    assert (await send(api, "GET", INTERFACES + "/deadbeeeeef2/IPAddresses")).json() == second["IPAddresses"]
    assert problem_of(await send(api, "GET", INTERFACES + "/0000"), 404)["detail"].startswith("No such")
    # The native API holds the same interface; its event is the native one.
    native = (await api.get("/hsm/v2/Inventory/EthernetInterfaces/deadbeeeeef1")).json()["spec"]
    assert native == {"componentId": "x1000c1s7b0n0", "macAddr": "de:ad:be:ee:ee:f1",
                      "ipAddrs": [{"ipAddress": "172.16.0.1", "network": "internal"}],
                      "description": "Interface 0 for nid001"}
    assert [s for s, _ in await events(conn, "chamicore.smd.ethernetinterfaces.created")] == [
        "deadbeeeeef1", "deadbeeeeef2"]
    # Filters, names in any case (ochami sends MACAddress=, ComponentID=, Type=).
    for query, expected in (("MACAddress=de%3Aad%3Abe%3Aee%3Aee%3Af2", ["deadbeeeeef2"]),
                            ("ComponentID=X1000C1S7B0N0", ["deadbeeeeef1"]), ("Type=Node", ["deadbeeeeef1", "deadbeeeeef2"]),
                            ("ipaddress=10.1.0.2", ["deadbeeeeef2"]), ("network=internal", ["deadbeeeeef1"]),
                            ("type=NodeBMC", []), ("ID=DEADBEEEEEF2", ["deadbeeeeef2"]),
                            ("NewerThan=2000-01-01T00:00:00Z", ["deadbeeeeef1", "deadbeeeeef2"]),
                            ("OlderThan=2000-01-01T00:00:00Z", [])):
        got = (await send(api, "GET", f"{INTERFACES}?{query}")).json()
        assert sorted(i["ID"] for i in got) == expected, query
    for bad in ("MACAddress=nope", "Type=Blade", "ComponentID=bad%20id", "OlderThan=yesterday", "colour=blue"):
        problem_of(await send(api, "GET", f"{INTERFACES}?{bad}"), 400)


async def test_bad_interfaces_are_refused_and_change_nothing(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    await sent(api, "POST", INTERFACES, IFACE, status=201)
    duplicate = await send(api, "POST", INTERFACES, {**IFACE, "MACAddress": "de-ad-be-ee-ee-f1"})
    assert "x1000c1s7b0n0" in problem_of(duplicate, 409)["detail"]
    missing = problem_of(await send(api, "POST", INTERFACES, {**IFACE, "ComponentID": "x1000c1s7b9n0",
                                                              "MACAddress": "de:ad:be:ee:ee:f9"}), 400)
    assert "x1000c1s7b9n0" in missing["detail"]
    for body, words in (({**IFACE, "MACAddress": ""}, "MACAddress"), ({**IFACE, "MACAddress": "not-a-mac"}, "MAC"),
                        ({**IFACE, "ComponentID": ""}, "ComponentID"),
                        ({**IFACE, "MACAddress": "de:ad:be:ee:ee:f9", "IPAddresses": [{"IPAddress": "300.1.1.1"}]},
                         "IP"),
                        ({**IFACE, "MACAddress": "de:ad:be:ee:ee:f9", "IPAddresses": "172.16.0.9"}, "IPAddresses"),
                        ({**IFACE, "MACAddress": "de:ad:be:ee:ee:f9", "ComponentID": "bad id"}, "CompID")):
        assert words in problem_of(await send(api, "POST", INTERFACES, body), 400)["detail"], body
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 1


async def test_patch_and_delete_interfaces(api, conn):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    await sent(api, "POST", INTERFACES, IFACE, status=201)
    problem_of(await send(api, "PATCH", INTERFACES + "/deadbeeeeef1", {"MACAddress": "00:00:00:00:00:01"}), 400)
    patched = await send(api, "PATCH", INTERFACES + "/deadbeeeeef1", {
        "ComponentID": "x1000c1s7b1n0", "IPAddresses": [{"IPAddress": "172.16.0.11"}]})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["ComponentID"], body["IPAddresses"], body["Description"]) == (
        "x1000c1s7b1n0", [{"IPAddress": "172.16.0.11"}], "Interface 0 for nid001")
    problem_of(await send(api, "PATCH", INTERFACES + "/deadbeeeeef1", {"ComponentID": "x1000c1s7b9n0"}), 400)
    problem_of(await send(api, "PATCH", INTERFACES + "/000000000000", {"Description": "x"}), 404)
    assert [s for s, _ in await events(conn, "chamicore.smd.ethernetinterfaces.updated")] == ["deadbeeeeef1"]
    deleted = await send(api, "DELETE", INTERFACES + "/deadbeeeeef1")
    assert deleted.status_code == 200 and deleted.json() == {"code": 0, "message": "deleted 1 entry"}
    assert problem_of(await send(api, "DELETE", INTERFACES + "/deadbeeeeef1"), 404)["detail"] == \
        "no such component ethernet interface."
    assert problem_of(await send(api, "DELETE", INTERFACES), 404)["detail"] == "no entries to delete"
    await sent(api, "POST", INTERFACES, IFACE, status=201)
    await sent(api, "POST", INTERFACES, {**IFACE, "MACAddress": "de:ad:be:ee:ee:f2"}, status=201)
    everything = await send(api, "DELETE", INTERFACES)
    assert everything.json() == {"code": 0, "message": "deleted 2 entries"}
    assert (await send(api, "GET", INTERFACES)).json() == []
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 2  # the components stay


# -- memberships --------------------------------------------------------------------------------------


async def test_memberships_name_groups_and_the_partition(api):
    await sent(api, "POST", COMPONENTS, {"Components": DISCOVERED})
    for group, members in (("compute", ["x1000c1s7b0n0", "x1000c1s7b1n0"]), ("io", ["x1000c1s7b1n0"])):
        await create(api, "/hsm/v2/groups", {"metadata": {"id": group}, "spec": {"members": members}})
    await create(api, "/hsm/v2/partitions", {"metadata": {"id": "p1"}, "spec": {"members": ["x1000c1s7b1n0"]}})
    listed = (await send(api, "GET", SMD + "/memberships")).json()
    assert listed == [{"id": "x1000c1s7b0n0", "groupLabels": ["compute"], "partitionName": ""},
                      {"id": "x1000c1s7b1n0", "groupLabels": ["compute", "io"], "partitionName": "p1"}]
    assert (await send(api, "GET", SMD + "/memberships?partition=p1")).json() == listed[1:]
    assert (await send(api, "GET", SMD + "/memberships/X1000C1S7B1N0")).json() == listed[1]
    assert problem_of(await send(api, "GET", SMD + "/memberships/x1000c1s7b5n0"), 404)["detail"] == "no such xname."
    problem_of(await send(api, "GET", SMD + "/memberships/not%20an%20xname"), 400)


# -- tokens -------------------------------------------------------------------------------------------


async def test_without_public_reads_every_smd_route_but_service_needs_a_token(anonymous):
    for method, path in (("GET", COMPONENTS), ("GET", INTERFACES), ("GET", INTERFACES + "/"),
                         ("GET", COMPONENTS + "/x1000c1s7b0n0"), ("GET", SMD + "/memberships"),
                         ("POST", COMPONENTS), ("POST", INTERFACES), ("DELETE", COMPONENTS)):
        response = await send(anonymous, method, path, {"Components": DISCOVERED} if method == "POST" else None)
        assert response.status_code == 401, (method, path, response.text)


async def test_public_reads_show_coresmd_only_what_it_reads(public_app, coresmd, dsn):
    async with await client_for(public_app, dsn, ["admin"], "ochami") as api:
        await sent(api, "POST", COMPONENTS, {"Components": [*DISCOVERED, {"ID": "x1000c1s7b0", "State": "Ready"}]})
        await sent(api, "POST", INTERFACES, IFACE, status=201)
        full = (await send(api, "GET", INTERFACES)).json()
    components = await coresmd.get(COMPONENTS)
    assert components.status_code == 200 and components.json() == {"Components": [
        {"ID": "x1000c1s7b0", "Type": "NodeBMC"}, {"ID": "x1000c1s7b0n0", "Type": "Node", "NID": 1},
        {"ID": "x1000c1s7b1n0", "Type": "Node", "NID": 2}]}
    interfaces = await coresmd.get(INTERFACES)
    assert interfaces.json() == [{"MACAddress": "de:ad:be:ee:ee:f1", "ComponentID": "x1000c1s7b0n0", "Type": "Node",
                                  "Description": "Interface 0 for nid001", "IPAddresses": [{"IPAddress": "172.16.0.1"}]}]
    assert (await coresmd.get(INTERFACES + "/")).json() == interfaces.json()
    assert len(full[0]) == 7  # with a token, the whole interface
    # Only the two collections: the rest still needs a token, and writes always do.
    for method, path in (("GET", COMPONENTS + "/x1000c1s7b0n0"), ("GET", INTERFACES + "/deadbeeeeef1"),
                         ("GET", COMPONENTS + "/ByNID/1"), ("GET", SMD + "/memberships"),
                         ("POST", COMPONENTS), ("PUT", COMPONENTS + "/x1000c1s7b0n0"), ("DELETE", INTERFACES)):
        assert (await send(coresmd, method, path, {})).status_code == 401, (method, path)


async def test_a_viewer_reads_everything_and_writes_nothing_even_with_public_reads(public_app, dsn, conn):
    async with await client_for(public_app, dsn, ["viewer"], "looker") as viewer:
        listed = await send(viewer, "GET", COMPONENTS)
        assert listed.status_code == 200 and listed.json() == {"Components": []}
        for method, path, body in (("POST", COMPONENTS, {"Components": DISCOVERED}),
                                   ("PUT", COMPONENTS + "/x1000c1s7b0n0", {"Component": DISCOVERED[0]}),
                                   ("PATCH", COMPONENTS + "/BulkNID", {"Components": DISCOVERED}),
                                   ("POST", INTERFACES, IFACE), ("DELETE", INTERFACES, None),
                                   ("DELETE", COMPONENTS, None)):
            response = await send(viewer, method, path, body)
            assert "write:smd" in problem_of(response, 403)["detail"], (method, path)
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0
