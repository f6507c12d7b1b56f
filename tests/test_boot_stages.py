"""Boot stages per node: the boot path records them, cloud-init's phone_home ends them, the admin API counts them."""

import asyncio
import json
import time
import urllib.error
import urllib.request

from hotpath.telemetry import CLOUD_INIT, IPXE, KERNEL_BOOTED, READY, SCRIPT, BootTelemetry, _step
from sync.leases import LeaseSync
from tests.helpers.seed import add_node, add_params, add_payload
from tests.helpers.servers import ServiceServer
from tests.helpers.tokens import token_for
from tests.mcp.conftest import http_session
from tests.test_cli import chamicore
from tests.test_cloudinit_client import run_cloud_init, seed_url

# cloud-init's own code, end to end: NoCloud-net reads the seed, its user-data processor and the cloud-config
# handler merge the parts (ours carries phone_home), and its phone_home module posts.
PHONE_HOME = """
import json, logging, sys, tempfile
from cloudinit import cloud, distros, helpers, util
from cloudinit.config import cc_phone_home
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloudNet
tmp = tempfile.mkdtemp()
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
distro = distros.fetch("debian")("debian", {}, paths)
md, ud, vd = util.read_seeded(sys.argv[1], timeout=5, retries=1)
ds = DataSourceNoCloudNet({}, distro, paths)
ds.metadata, ds.userdata_raw, ds.vendordata_raw = md, ud, vd
paths.datasource = ds  # the instance's directory, where the merged cloud-config goes
handler = CloudConfigPartHandler(paths)
handler.handle_part(None, "__begin__", None, None, None, None)
for part in ds.get_userdata().walk():
    if part.get_content_type() == "text/cloud-config":
        handler.handle_part(None, "text/cloud-config", part.get_filename(), part.get_payload(decode=True).decode(),
                            None, dict(part.items()))
handler.handle_part(None, "__end__", None, None, None, None)
cfg = util.read_conf(handler.cloud_fn)
cc_phone_home.handle("phone_home", cfg, cloud.Cloud(ds, paths, {}, distro, helpers.Runners(paths)),
                     logging.getLogger(), [])
print(json.dumps({"phone_home": cfg["phone_home"], "instance": ds.get_instance_id(), "packages": cfg.get("packages")}))
"""


async def until(predicate, timeout: float):
    """Poll an async predicate until it returns something truthy (the server flushes every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not (found := await predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


async def test_cloud_init_phones_home_and_the_node_is_ready(conn, dsn, api):
    # The test runs cloud-init from 127.0.0.1: node-ph owns that address; node-other does not.
    await add_node(conn, "node-ph", ["52:54:00:aa:cc:01"], nid=1, ips=["127.0.0.1"], groups=["storm"])
    await add_node(conn, "node-other", ["52:54:00:aa:cc:02"], nid=2, ips=["10.0.0.8"])
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="console=ttyS0")
    await add_payload(conn, "site", user_data="#cloud-config\npackages: [htop]\n")
    server = ServiceServer(dsn, "rsgi")
    server.env.update(CHAMICORE_BOOT_URL=server.url, CHAMICORE_PHONE_HOME="true")
    try:
        server.start()
        # node-ph's boot as the boot path sees it: first stage (by its address), script, then cloud-init.
        assert server.get("/boot/v1/boot.ipxe")[0] == 200
        other_seed = seed_url(server, "52:54:00:aa:cc:02")
        other_token = other_seed.rstrip("/").rsplit("/", 1)[1]
        # Refused, and recorded nowhere: another node's URL without its token, or with a wrong one, from
        # node-ph's address; node-ph's own token on another node's URL; node-ph naming node-other's instance.
        own_seed = seed_url(server, "52:54:00:aa:cc:01")
        own_token = own_seed.rstrip("/").rsplit("/", 1)[1]
        form = b"instance_id=node-ph-0123456789abcdef&hostname=x&fqdn=x"
        assert post(f"{server.url}/cloud-init/node-other/phone-home", form) == 404
        assert post(f"{server.url}/cloud-init/node-other/{'0' * 32}/phone-home", form) == 404
        assert post(f"{server.url}/cloud-init/node-other/{own_token}/phone-home", form) == 404
        assert post(f"{server.url}/cloud-init/phone-home", b"instance_id=node-other-0123456789abcdef") == 403
        assert post(f"{server.url}/cloud-init/node-other/{other_token}/phone-home", b"x" * 9000) == 413
        assert post(f"{server.url}/cloud-init/node-other/{other_token}/phone-home", b"a=%ff") == 400
        assert server.get("/cloud-init/phone-home")[0] == 404  # GET: no such document

        data = run_cloud_init(PHONE_HOME, own_seed)
        assert data["phone_home"]["url"] == f"{server.url}/cloud-init/phone-home"
        assert data["phone_home"]["tries"] == 3 and data["packages"] == ["htop"]  # the site's part is merged

        async def ready():
            answer = await api.get("/boot/v1/stages", params={"componentId": "node-ph"})
            items = answer.json()["items"]
            return items[0] if items and items[0]["stage"] == "ready" else None

        item = await until(ready, timeout=10)
        stamps = item["stamps"]
        assert list(stamps) == ["ipxe", "script", "kernel-booted", "cloud-init", "ready"]
        assert stamps["ipxe"] <= stamps["script"] <= stamps["kernel-booted"] <= stamps["cloud-init"] <= stamps["ready"]
        # node-other's script was asked for (its seed URL above); none of the refused posts made it ready.
        other = await conn.fetchrow("SELECT stage, ready_at FROM bss.boot_stages WHERE component_id = 'node-other'")
        assert other["stage"] == 2 and other["ready_at"] is None
        summary = (await api.get("/boot/v1/stages/summary", params={"group": "storm"})).json()
        assert summary["nodes"] == 1 and summary["byStage"]["ready"] == 1 and summary["readyInWindow"] == 1
    finally:
        server.stop()


async def test_stage_counts_stuck_nodes_and_time_to_ready(conn, dsn, api, admin_server):
    for i in range(8):
        await add_node(conn, f"n{i}", groups=["even" if i % 2 == 0 else "odd"])
    await add_node(conn, "n-never")
    recorder = BootTelemetry(dsn)
    now = time.time()
    durations = [30.0, 42.5, 55.0, 61.0, 90.0]  # n0..n4 boot to ready in these many seconds
    for i, seconds in enumerate(durations):
        start = now - 600 + i
        for stage, at in ((IPXE, 0), (SCRIPT, 1), (KERNEL_BOOTED, 10), (CLOUD_INIT, 12), (READY, seconds)):
            recorder.record_stage(f"n{i}", stage, start + at)
    recorder.record_stage("n5", SCRIPT, now - 120)  # stuck at script for two minutes
    recorder.record_stage("n6", SCRIPT, now - 300)
    recorder.record_stage("n6", KERNEL_BOOTED, now - 200)  # stuck at kernel-booted
    recorder.record_stage("n7", IPXE, now - 5)  # just started
    assert await recorder.flush_stages() == 8 and recorder.pending_stages == 0
    # A lease Kea gave n7 before its first stage, and a renewal n0 got once ready (no new boot).
    nothing = [None, None]
    await conn.execute("SELECT bss.apply_boot_stages($1, $2, $3, $4, $5, $6, $7, $8)", ["n7", "n0"], nothing,
                       [now - 8, now - 1], nothing, nothing, nothing, nothing, nothing)

    summary = (await api.get("/boot/v1/stages/summary", params={"windowMinutes": 60})).json()
    assert summary["byStage"] == {"dhcp": 0, "ipxe": 1, "script": 1, "kernel-booted": 1, "cloud-init": 0, "ready": 5}
    assert summary["nodes"] == 9 and summary["notSeen"] == 1 and summary["readyInWindow"] == 5
    for key, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert abs(summary["timeToReadySeconds"][key] - percentile_cont(durations, fraction)) < 0.01, key
    even = (await api.get("/boot/v1/stages/summary", params={"group": "even"})).json()
    assert even["nodes"] == 4 and even["readyInWindow"] == 3  # n0, n2, n4
    assert abs(even["timeToReadySeconds"]["p50"] - 55.0) < 0.01

    stuck = (await api.get("/boot/v1/stages", params={"stuckFor": 60, "limit": 1})).json()
    assert stuck["total"] == 2 and [i["componentId"] for i in stuck["items"]] == ["n6"]  # longest at its stage first
    page2 = (await api.get("/boot/v1/stages", params={"stuckFor": 60, "limit": 1, "offset": 1})).json()
    assert page2["items"][0]["componentId"] == "n5" and page2["items"][0]["secondsAtStage"] >= 119
    assert (await api.get("/boot/v1/stages", params={"stuckFor": 60, "stage": "script"})).json()["total"] == 1
    n7 = (await api.get("/boot/v1/stages", params={"componentId": "n7"})).json()["items"][0]
    assert n7["stage"] == "ipxe" and "dhcp" in n7["stamps"]
    n0 = (await api.get("/boot/v1/stages", params={"componentId": "n0"})).json()["items"][0]
    assert n0["stage"] == "ready" and "dhcp" not in n0["stamps"]  # the renewal did not become this boot's lease
    bad = await api.get("/boot/v1/stages", params={"stage": "booting"})
    assert bad.status_code == 400 and "booting" in bad.json()["detail"]

    # The same answers through the CLI.
    server = admin_server()
    env = {"CHAMICORE_ENDPOINT": server.url, "CHAMICORE_TOKEN": await token_for(server.url, dsn, "cli", ["admin"])}
    shown = await asyncio.to_thread(chamicore, "stages", "summary", "--group", "even", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "3 of 4 nodes ready within 60 min; time to ready p50 55.0 s" in shown.stdout
    listed = await asyncio.to_thread(chamicore, "stages", "list", "--stuck-for", "60", "-o", "json", env=env)
    assert [i["componentId"] for i in json.loads(listed.stdout)["items"]] == ["n6", "n5"]
    # And through the agents' face (MCP), the same handler.
    async with http_session(server.url, env["CHAMICORE_TOKEN"]) as session:
        answer = (await session.call_tool("boot.stages.summary", {"group": "even"})).structured_content
        assert answer["readyInWindow"] == 3 and answer["byStage"]["ready"] == 3
        stuck = (await session.call_tool("boot.stages.list", {"stuckFor": 60})).structured_content
        assert [i["componentId"] for i in stuck["items"]] == ["n6", "n5"]

    # n0 reboots: its script after ready begins a new boot, and what it had is gone.
    recorder.record_stage("n0", SCRIPT, now)
    await recorder.flush_stages()
    n0 = (await api.get("/boot/v1/stages", params={"componentId": "n0"})).json()["items"][0]
    assert n0["stage"] == "script" and list(n0["stamps"]) == ["dhcp", "script"]  # the lease after ready: this boot's
    await recorder.stop()


async def test_stages_wait_for_the_database_and_a_new_boot_within_one_flush(conn, dsn):
    await add_node(conn, "n1")
    recorder = BootTelemetry("postgresql://postgres@127.0.0.1:1/nowhere")
    now = time.time()
    recorder.record_stage("n1", SCRIPT, now - 50)
    recorder.record_stage("n1", READY, now - 40)
    assert await recorder.flush_stages() == 0 and recorder.pending_stages == 1
    recorder.record_stage("n1", SCRIPT, now - 30)  # rebooted while the database was away
    recorder.record_stage("n1", KERNEL_BOOTED, now - 20)
    recorder.dsn = dsn
    assert await recorder.flush_stages() == 1
    row = await conn.fetchrow("SELECT * FROM bss.boot_stages WHERE component_id = 'n1'")
    assert row["stage"] == 4 - 1 and row["ready_at"] is None
    assert abs(row["script_at"].timestamp() - (now - 30)) < 0.001
    await recorder.stop()


def kea_command(kea, command: str, arguments: dict) -> dict:
    body = json.dumps({"command": command, "service": ["dhcp4"], "arguments": arguments}).encode()
    request = urllib.request.Request(kea.url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())[0]


async def test_kea_leases_become_the_dhcp_stage(conn, dsn, kea):
    await add_node(conn, "n-lease", ["52:54:00:aa:dd:01"])
    await add_node(conn, "n-booted", ["52:54:00:aa:dd:02"])
    now = int(time.time())
    for mac, ip, cltt in (("52:54:00:aa:dd:01", "10.1.0.11", now - 30), ("52:54:00:aa:dd:02", "10.1.0.12", now - 20),
                          ("52:54:00:ff:ff:ff", "10.1.0.13", now)):  # the last is no node's: skipped
        added = kea_command(kea, "lease4-add", {"ip-address": ip, "hw-address": mac, "subnet-id": 1,
                                                "valid-lft": 3600, "expire": cltt + 3600})
        assert added["result"] == 0, added
    recorder = BootTelemetry(dsn)
    recorder.record_stage("n-booted", SCRIPT, now - 10)  # n-booted asked for its script after its lease
    await recorder.flush_stages()
    job = LeaseSync(dsn, kea.url)
    await job.work_once(conn)
    rows = {r["component_id"]: r for r in await conn.fetch("SELECT * FROM bss.boot_stages")}
    assert rows["n-lease"]["stage"] == 0 and rows["n-lease"]["dhcp_at"].timestamp() == now - 30
    assert rows["n-booted"]["stage"] == 2 and rows["n-booted"]["dhcp_at"].timestamp() == now - 20
    assert job.counts() == {"passes": 0, "leases": 3, "written": 2}
    await job.work_once(conn)  # nothing changed in Kea: nothing written again
    assert job.counts()["written"] == 2
    await recorder.stop()


def test_the_per_request_path_keeps_the_rules_of_the_merge_path():
    """The per-request record (compiled, hotpath/_activity.pyx) spells the new-boot rule out for speed; _step (used
    to merge after a failed flush) is the rule as written in SQL.  Both give the same marks for every short sequence,
    whether the stage comes with a counted request (record) or alone (record_stage)."""
    stages = (IPXE, SCRIPT, KERNEL_BOOTED, CLOUD_INIT, READY)
    sequences = [[a, b, c, d] for a in stages for b in stages for c in stages for d in stages]
    for sequence in sequences:
        recorder = BootTelemetry("postgresql://unused")
        expected = [0.0] * 6
        for at, stage in enumerate(sequence, start=1):
            if at % 2:
                recorder.record("n", 0, float(at), "10.0.0.1:68", stage)
            else:
                recorder.record_stage("n", stage, float(at))
            if at == 1:
                expected[stage] = 1.0
            else:
                _step(expected, stage, float(at))
        assert recorder.activity.nodes["n"].marks() == expected, sequence
        assert recorder.pending == 1 and recorder.activity.nodes["n"].requests == 2


async def test_phone_home_over_asgi_by_token(conn, boot_server):
    """The ASGI face reads the body its own way (receive()): bounded the same, and a token is enough."""
    await add_node(conn, "node-a", ["52:54:00:aa:ee:01"], ips=["10.0.0.21"])
    await add_params(conn, "site", kernel="http://images/vmlinuz")
    await add_payload(conn, "site", user_data="#cloud-config\n")
    server = boot_server("asgi")
    token = seed_url(server, "52:54:00:aa:ee:01").rstrip("/").rsplit("/", 1)[1]
    assert post(f"{server.url}/cloud-init/node-a/{token}/phone-home", b"x" * 9000) == 413
    assert post(f"{server.url}/cloud-init/node-a/phone-home", b"instance_id=node-a-0123456789abcdef") == 404
    assert post(f"{server.url}/cloud-init/node-a/{token}/phone-home", b"instance_id=node-a-0123456789abcdef") == 204

    async def ready():
        return await conn.fetchval("SELECT stage = 5 FROM bss.boot_stages WHERE component_id = 'node-a'")

    assert await until(ready, timeout=10)


async def test_a_nodes_stages_between_two_stage_flushes_are_one_row(conn, dsn):
    """Telemetry flushes every few seconds; stages only every stages_interval_s, so a node that went through
    several stages meanwhile is written once, with each stage's first time.  Stopping writes what waits."""
    await add_node(conn, "n1")
    recorder = BootTelemetry(dsn, stages_interval_s=3600)
    now = time.time()
    for stage, at in ((SCRIPT, now - 30), (KERNEL_BOOTED, now - 20), (CLOUD_INIT, now - 10)):
        recorder.record_stage("n1", stage, at)
        await recorder.flush()  # a telemetry flush: the stages are not due yet
    assert recorder.pending_stages == 1
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_stages") == 0
    await recorder.stop()
    row = await conn.fetchrow("SELECT * FROM bss.boot_stages WHERE component_id = 'n1'")
    assert row["stage"] == CLOUD_INIT and abs(row["script_at"].timestamp() - (now - 30)) < 0.001
    assert abs(row["cloud_init_at"].timestamp() - (now - 10)) < 0.001
