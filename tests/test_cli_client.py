"""The `chamicore` client commands against a real admin API (granian + PostgreSQL), in every output format."""

import asyncio
import io
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from cli.main import run
from tests.helpers.keys import CREDENTIALS_KEY
from tests.helpers.paths import ROOT
from tests.helpers.redfish import PASSWORD, USERNAME, RedfishEmulator, fake_system
from tests.helpers.tokens import token_for


@pytest.fixture
def chamicore(admin_server, dsn, monkeypatch, tmp_path, capsys):
    """Run `chamicore ARGS` in this process against a fresh admin API; returns (exit code, stdout, stderr)."""
    server = admin_server()
    monkeypatch.setenv("CHAMICORE_ENDPOINT", server.url)
    monkeypatch.setenv("CHAMICORE_TOKEN", asyncio.run(token_for(server.url, dsn)))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CHAMICORE_DATA_DIR", str(tmp_path / "data"))  # no bootstrap credentials to fall back on

    def call(*argv: str, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = run(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    call.server = server
    return call


def ok(result):
    code, out, err = result
    assert code == 0, err
    return out


def test_components_round_trip_in_every_format(chamicore, tmp_path):
    ok(chamicore("components", "create", "--id", "node-1", "--set", "type=Node", "--set", "nid=1",
                 "--set", "role=Compute", "--set", "location.rack=R12", "--set", "location.unit=4"))
    ok(chamicore("components", "create", "--id", "bmc-1", "--set", "type=BMC"))
    table = ok(chamicore("components", "list", "--type", "Node"))
    header, *rows = table.splitlines()
    assert header.split()[:5] == ["ID", "TYPE", "STATE", "ROLE", "NID"]
    assert len(rows) == 1 and rows[0].split()[:5] == ["node-1", "Node", "Empty", "Compute", "1"]
    as_json = json.loads(ok(chamicore("components", "get", "node-1", "-o", "json")))
    assert as_json["spec"]["location"] == {"rack": "R12", "unit": 4, "slot": 0, "subSlot": 0}
    as_yaml = yaml.safe_load(ok(chamicore("-o", "yaml", "components", "list", "--rack", "R12")))
    assert [i["metadata"]["id"] for i in as_yaml["items"]] == ["node-1"]

    ok(chamicore("components", "patch", "node-1", "--set", "state=Ready", "--set", "parentId=bmc-1"))
    assert json.loads(ok(chamicore("components", "get", "node-1", "-o", "json")))["spec"]["parentId"] == "bmc-1"
    # update: a whole spec from a file (here the GET answer, edited), sent with If-Match
    document = json.loads(ok(chamicore("components", "get", "node-1", "-o", "json")))
    document["spec"]["nid"] = 42
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(document))
    ok(chamicore("components", "update", "node-1", "-f", str(tmp_path / "node.yaml")))
    assert json.loads(ok(chamicore("components", "get", "node-1", "-o", "json")))["spec"]["nid"] == 42

    code, _, err = chamicore("components", "delete", "bmc-1")
    assert code == 6 and "409" in err and "hint:" in err  # node-1's parent: a conflict
    ok(chamicore("components", "delete", "node-1"))
    code, _, err = chamicore("components", "get", "node-1")
    assert code == 5
    assert "admin API: GET /hsm/v2/State/Components/node-1: 404 Not Found: no component 'node-1'" in err


@pytest.mark.parametrize("args, listing, column", [
    (("interfaces", "create", "--set", "componentId=n1", "--set", "macAddr=AA-BB-CC-00-00-01",
      "--set", 'ipAddrs=[{"ipAddress": "10.0.0.1"}]'), ("interfaces", "list", "--component-id", "n1"),
     "aa:bb:cc:00:00:01"),
    (("groups", "create", "--set", "name=rack1", "--set", 'members=["n1"]'), ("groups", "list"), "rack1"),
    (("partitions", "create", "--set", "name=p1", "--set", 'members=["n1"]'), ("partitions", "list"), "p1"),
    (("bootparams", "create", "--id", "compute", "--set", "role=Compute", "--set", "kernel=http://img/vmlinuz"),
     ("bootparams", "list", "--role", "Compute"), "http://img/vmlinuz"),
    (("payloads", "create", "--id", "site", "--set", "userData=#cloud-config\n"), ("payloads", "list"), "site"),
    (("credentials", "create", "--id", "bmc-cred", "--set", "username=root", "--set", "secret=hunter2"),
     ("credentials", "list"), "root"),
    (("service-accounts", "create", "--id", "robot", "--set", 'roles=["viewer"]'), ("service-accounts", "list"),
     "viewer"),
    (("discovery", "targets", "create", "--id", "rack1-bmcs", "--set", "driver=redfish",
      "--set", "address=10.0.0.0/28"), ("discovery", "targets", "list"), "10.0.0.0/28"),
])
def test_every_resource_can_be_created_listed_patched_and_deleted(chamicore, args, listing, column):
    ok(chamicore("components", "create", "--id", "n1", "--set", "type=Node"))
    created = json.loads(ok(chamicore(*args, "-o", "json")))
    assert column in ok(chamicore(*listing))
    noun = args[:-len(args) + (2 if args[0] == "discovery" else 1)]
    resource_id = (created.get("metadata") or {}).get("id") or created.get("id") or created.get("clientId")
    patch = {"interfaces": "description=eth0", "groups": "description=first", "partitions": "description=first",
             "bootparams": "cmdline=quiet", "payloads": "vendorData=#cloud-config\n", "credentials": "username=admin",
             "service-accounts": "description=robot", "discovery": "enabled=false"}[args[0]]
    # Resources the API cannot replace whole take `update` as a patch; the others are patched here.
    verb = "update" if args[0] in ("credentials", "service-accounts", "discovery") else "patch"
    ok(chamicore(*noun, verb, resource_id, "--set", patch))
    shown = json.loads(ok(chamicore(*noun, "get", resource_id, "-o", "json")))
    key, _, value = patch.partition("=")
    assert (shown.get("spec") or shown)[key] == (False if value == "false" else value)
    if args[0] == "credentials":
        assert "hunter2" not in json.dumps(shown)  # secrets never shown
    ok(chamicore(*noun, "delete", resource_id))
    assert chamicore(*noun, "get", resource_id)[0] == 5


def test_errors_name_the_service_the_status_and_what_to_do(chamicore, monkeypatch):
    code, _, err = chamicore("components", "create", "--set", "type=Spaceship")
    assert code == 2 and "422" in err and "$.spec.type" in err and "hint: fix the fields named above" in err
    ok(chamicore("components", "create", "--id", "n1", "--set", "type=Node"))
    code, _, err = chamicore("components", "create", "--id", "n1", "--set", "type=Node")
    assert code == 6 and "already exists" in err
    code, _, err = chamicore("components", "create", "--set", "nid")  # no '='
    assert code == 2 and "expected PATH=VALUE" in err
    code, _, err = chamicore("components", "patch", "n1")
    assert code == 2 and "nothing to change" in err
    code, _, err = chamicore("components", "list", "--bogus")
    assert code == 2  # argparse: unknown option
    monkeypatch.setenv("CHAMICORE_TOKEN", "not-a-token")
    code, _, err = chamicore("components", "list")
    assert code == 7 and "401" in err and "chamicore auth login" in err
    monkeypatch.setenv("CHAMICORE_ENDPOINT", "http://127.0.0.1:1")
    code, _, err = chamicore("components", "list")
    assert code == 8 and "cannot reach http://127.0.0.1:1" in err and "chamicore up" in err


def test_auth_login_whoami_and_a_token_from_the_config_file(chamicore, monkeypatch, tmp_path):
    secret = json.loads(ok(chamicore("service-accounts", "create", "--id", "ops-bot", "--set",
                                     'roles=["operator"]', "-o", "json")))["clientSecret"]
    monkeypatch.delenv("CHAMICORE_TOKEN")
    code, _, err = chamicore("auth", "login", "--client-id", "ops-bot", stdin="wrong\n")
    assert code == 7 and "401" in err
    ok(chamicore("auth", "login", "--client-id", "ops-bot", stdin=secret + "\n"))
    config = tmp_path / "config" / "chamicore" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert yaml.safe_load(config.read_text())["client_id"] == "ops-bot"
    who = yaml.safe_load(ok(chamicore("auth", "whoami")))
    assert who["subject"] == "ops-bot" and "write:power" in who["scopes"] and "write:auth" not in who["scopes"]
    token = ok(chamicore("auth", "token")).strip()
    assert token.count(".") == 2
    # The operator role cannot manage accounts: a 403 with the scope named, exit code 7.
    code, _, err = chamicore("service-accounts", "list")
    assert code == 7 and "read:auth" in err
    # The config file's output format is the default.
    config.write_text(config.read_text() + "output: json\n")
    assert json.loads(ok(chamicore("components", "list")))["kind"] == "ComponentList"
    # CHAMICORE_TOKEN and CHAMICORE_ENDPOINT win over the file.
    monkeypatch.setenv("CHAMICORE_TOKEN", "overridden")
    assert chamicore("components", "list")[0] == 7
    monkeypatch.delenv("CHAMICORE_TOKEN")
    monkeypatch.setenv("CHAMICORE_ENDPOINT", "http://127.0.0.1:1")
    assert chamicore("components", "list")[0] == 8


async def test_node_provision_import_and_bootscript(chamicore, boot_server, tmp_path, conn):
    body = {"nid": 7, "role": "Compute", "networkInterfaces": [{"macAddr": "52:54:00:00:07:01"}],
            "bootParams": {"kernel": "http://img/vmlinuz", "initrd": "http://img/initrd"}}
    (tmp_path / "node.json").write_text(json.dumps(body))
    plan = json.loads(ok(chamicore("node", "provision", "node-7", "-f", str(tmp_path / "node.json"), "--dry-run",
                                   "-o", "json")))
    assert plan["dryRun"] is True and chamicore("components", "get", "node-7")[0] == 5
    ok(chamicore("node", "provision", "node-7", "-f", str(tmp_path / "node.json")))
    assert json.loads(ok(chamicore("components", "get", "node-7", "-o", "json")))["spec"]["nid"] == 7
    ok(chamicore("node", "provision", "node-8", "--set", "nid=8"))
    ok(chamicore("node", "decommission", "node-8", "--purge", "--dry-run"))
    assert chamicore("components", "get", "node-8")[0] == 0  # a plan only
    ok(chamicore("node", "decommission", "node-8", "--purge"))
    assert chamicore("components", "get", "node-8")[0] == 5

    server = boot_server()
    script = ok(chamicore("bootscript", "52-54-00-00-07-01", "--boot-endpoint", server.url))
    assert script.startswith("#!ipxe") and "http://img/vmlinuz" in script
    server.get("/boot/v1/bootscript?mac=52:54:00:00:07:01")  # the node itself asks once
    await asyncio.sleep(0.8)  # several telemetry flushes
    # The node's own request is counted; the preview is not.
    assert await conn.fetchval("SELECT requests FROM bss.boot_telemetry WHERE component_id = 'node-7'") == 1
    code, _, err = chamicore("bootscript", "52-54-00-00-07-01", "--boot-endpoint", "http://127.0.0.1:1")
    assert code == 8 and "boot path" in err

    nodes = [{"id": f"imp-{i}", "type": "Node", "nid": 100 + i,
              "networkInterfaces": [{"macAddr": f"02:00:00:00:01:{i:02x}"}]} for i in range(25)]
    (tmp_path / "nodes.ndjson").write_text("\n".join(json.dumps(n) for n in nodes))
    code, _, err = chamicore("import", str(tmp_path / "nodes.ndjson"), "--batch", "10")
    assert code == 0, err
    assert "import [" in err and "25/25" in err and "imported 25 nodes" in err
    assert json.loads(ok(chamicore("components", "list", "--nid", "124", "-o", "json")))["metadata"]["total"] == 1
    bad = nodes[:3] + [{"id": "imp-x", "type": "Node", "nid": "seven"}]
    (tmp_path / "bad.json").write_text(json.dumps([{**n, "id": n["id"] + "b", "nid": None,
                                                    "networkInterfaces": []} for n in bad[:3]] + bad[3:]))
    code, _, err = chamicore("import", str(tmp_path / "bad.json"), "--batch", "2")
    assert code == 2 and "nodes 3-4" in err and "2 nodes before them were imported" in err


async def test_import_csv_dry_run_lists_the_diff_and_names_bad_lines(chamicore, tmp_path, conn):
    await conn.execute("INSERT INTO smd.groups (name) VALUES ('compute')")
    csv_file = tmp_path / "rack12.csv"
    csv_file.write_text("id,nid,mac,bmc,groups\n"
                        "x3000c0s1b0n0,1,02:00:00:00:30:01,https://127.0.0.1:9443,compute\n"
                        "x3000c0s1b0n1,2,02:00:00:00:30:02,https://127.0.0.1:9443,\n"
                        "\n"
                        "plain-node,3,,ipmi://127.0.0.1:6231,compute\n")
    diff = json.loads(ok(chamicore("import", str(csv_file), "--dry-run", "-o", "json")))
    assert diff == {"nodes": ["x3000c0s1b0n0", "x3000c0s1b0n1", "plain-node"],
                    "bmcs": [{"id": "x3000c0s1b0", "address": "https://127.0.0.1:9443", "action": "created",
                              "nodes": ["x3000c0s1b0n0", "x3000c0s1b0n1"]},
                             {"id": "plain-node-bmc", "address": "ipmi://127.0.0.1:6231", "action": "created",
                              "nodes": ["plain-node"]}],
                    "groups": {"compute": ["x3000c0s1b0n0", "plain-node"]}}
    assert not await conn.fetchval("SELECT count(*) FROM smd.components")
    code, table, err = chamicore("import", str(csv_file), "--dry-run")
    assert code == 0 and "the import would create 3 nodes, 2 new BMCs (2 in all), 2 group memberships" in err
    assert [line.split()[:3] for line in table.splitlines()[-2:]] == [["join", "group", "x3000c0s1b0n0"],
                                                                      ["join", "group", "plain-node"]]
    code, _, err = chamicore("import", str(csv_file))
    assert code == 0 and "imported 3 nodes" in err
    assert await conn.fetchval("SELECT parent_id FROM smd.components WHERE id = 'plain-node'") == "plain-node-bmc"
    # A refused item is named by its line in the file, and nothing of its batch is imported.
    bad = tmp_path / "bad.csv"
    bad.write_text("id,groups\nfine-node,compute\n\nlost-node,nope\n")
    code, _, err = chamicore("import", str(bad))
    assert code == 2 and "line 4: $[1].groups[0]: no group 'nope'" in err, err
    assert not await conn.fetchval("SELECT true FROM smd.components WHERE id = 'fine-node'")


def test_completion_and_help():
    script = subprocess.run([sys.executable, "-m", "cli.main", "completion", "bash"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert script.returncode == 0 and "complete -o default -F _chamicore chamicore" in script.stdout
    words = subprocess.run([sys.executable, "-m", "cli.main", "__complete", "power", ""], cwd=ROOT,
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert words == ["abort", "list", "off", "on", "reboot", "reset", "show", "status"]
    options = subprocess.run([sys.executable, "-m", "cli.main", "__complete", "components", "list", "--ra"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.split()
    assert options == ["--rack"]
    env = dict(os.environ, CHAMICORE_ENDPOINT="http://127.0.0.1:1")
    usage = subprocess.run([sys.executable, "-m", "cli.main", "power"], cwd=ROOT, capture_output=True, text=True,
                           env=env, timeout=30)
    assert usage.returncode == 2 and "VERB" in usage.stderr


@pytest.fixture
def sync_daemon(dsn):
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_LOG_LEVEL="warning",
               CHAMICORE_CREDENTIALS_KEY=CREDENTIALS_KEY, CHAMICORE_POWER_POLL_S="3600")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    process.terminate()
    process.wait(timeout=20)


def test_discovery_scan_then_power_with_live_progress(chamicore, sync_daemon):
    emulator = RedfishEmulator([fake_system(1, "Off"), fake_system(2, "Off")]).start()
    try:
        ok(chamicore("credentials", "create", "--id", "bmc-cred", "--set", f"username={USERNAME}",
                     "--set", f"secret={PASSWORD}"))
        ok(chamicore("discovery", "targets", "create", "--id", "lab", "--set", "driver=redfish",
                     "--set", f"address={emulator.url}", "--set", "credentialId=bmc-cred"))
        code, out, err = chamicore("discovery", "scan", "lab", "--wait")
        assert code == 0, err
        assert "scan scan-" in err and "1/1" in err  # the progress line (not a terminal: one line per change)
        assert "completed" in out and emulator.url in out
        nodes = json.loads(ok(chamicore("components", "list", "--type", "Node", "-o", "json")))["items"]
        ids = sorted(n["metadata"]["id"] for n in nodes)
        assert len(ids) == 2
        ok(chamicore("groups", "create", "--set", "name=lab", "--set", f"members={json.dumps(ids)}"))

        plan = json.loads(ok(chamicore("power", "on", "--group", "lab", "--dry-run", "-o", "json")))
        assert plan["dryRun"] and {t["state"] for t in plan["tasks"]} == {"would-run"}
        code, out, err = chamicore("power", "on", "--group", "lab", "--wait", "--timeout", "120")
        assert code == 0, err
        for node_id in ids:  # per node, as it happened
            assert f"  {node_id}: pending" in err and f"  {node_id}: succeeded (reached On)" in err
        assert out.count("succeeded") == 2
        status = ok(chamicore("power", "status", "--group", "lab", "--state", "on"))
        assert all(node_id in status for node_id in ids)
        listed = json.loads(ok(chamicore("power", "list", "-o", "json")))
        assert listed["items"][0]["state"] == "completed"
        code, _, err = chamicore("power", "on")
        assert code == 2 and "name nodes and/or --group" in err
    finally:
        emulator.close()
