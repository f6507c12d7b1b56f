"""The hardware inventory: a redfish scan of sushy-tools' emulator reads it, the admin API serves and filters it,
and a re-scan records what changed.

sushy-tools' fake driver serves systems, their EthernetInterfaces, Storage and Drives (its static storage
driver), and an UpdateService; it has no Processors, Memory or FirmwareInventory.  Those come from the
recording proxy's overlay (tests/helpers/redfish.py, a MOCK of just those resources), as a BMC would serve them.
"""

import json

import pytest

from core.hardware import Hardware, MemoryModule, Processor
from sync.discovery.hardware import Read, store
from sync.discovery.scanner import DiscoveryScanner
from tests.helpers.api import create, credential, problem_of, scan
from tests.helpers.keys import box
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.tasks import running
from tests.helpers.tokens import token_for

GPU_NODE, CPU_NODE = fake_system(1), fake_system(2)
SYSTEMS = [GPU_NODE, CPU_NODE]
DRIVES = {GPU_NODE["uuid"]: [{"Id": "nvme0", "Name": "Drive 0", "CapacityBytes": 3_840_000_000_000, "Protocol": "NVMe"}]}
BASE = "/hsm/v2/Inventory/Hardware"
FIRMWARE = "/redfish/v1/UpdateService/FirmwareInventory"


def system_path(system: dict) -> str:
    return f"/redfish/v1/Systems/{system['uuid']}"


def collection(path: str, members: list[str]) -> dict:
    return {"@odata.id": path, "Members": [{"@odata.id": m} for m in members], "Members@odata.count": len(members)}


def processor(path: str, kind: str, model: str, cores: int) -> dict:
    return {"@odata.id": path, "Id": path.rsplit("/", 1)[1], "ProcessorType": kind, "Model": model,
            "Manufacturer": "Intel" if kind == "CPU" else "NVIDIA", "ProcessorArchitecture": "x86",
            "InstructionSet": "x86-64", "TotalCores": cores, "TotalThreads": cores * 2, "MaxSpeedMHz": 3800}


def overlay(bmc_version: str = "2.9.1", gpu: bool = True) -> dict[str, dict]:
    """What sushy-tools does not serve, as a BMC would: processors (one GPU node), memory, firmware versions."""
    documents: dict[str, dict] = {}
    for system, bios in ((GPU_NODE, "1.9.0"), (CPU_NODE, "1.10.0")):
        base = system_path(system)
        cpus = [f"{base}/Processors/CPU0"]
        documents[cpus[0]] = processor(cpus[0], "CPU", "Intel(R) Xeon(R) Platinum 8480+", 56)
        if system is GPU_NODE:
            if gpu:
                cpus.append(f"{base}/Processors/GPU0")
                documents[cpus[-1]] = processor(cpus[-1], "GPU", "NVIDIA H100 80GB HBM3", 132)
            # A member the BMC lists but cannot serve, and one whose model no admin could store.
            cpus += [f"{base}/Processors/Gone", f"{base}/Processors/FPGA0"]
            documents[cpus[-1]] = {"Id": "FPGA0", "ProcessorType": "FPGA", "Model": "bad\nmodel", "TotalCores": -1}
            dimms = [f"{base}/Memory/DIMM{n}" for n in range(2)]
            documents[f"{base}/Memory"] = collection(f"{base}/Memory", dimms)
            for dimm in dimms:
                documents[dimm] = {"Id": dimm[-5:], "CapacityMiB": 32768, "MemoryDeviceType": "DDR5",
                                   "OperatingSpeedMhz": 4800, "Manufacturer": "Samsung", "SerialNumber": dimm[-5:]}
        # (No Memory for the other node: sushy-tools answers 404, a BMC that has none to report.)
        documents[f"{base}/Processors"] = collection(f"{base}/Processors", cpus)
        documents[base] = {"Processors": {"@odata.id": f"{base}/Processors"}, "BiosVersion": bios}
    documents[FIRMWARE] = collection(FIRMWARE, [f"{FIRMWARE}/BMC", f"{FIRMWARE}/NIC"])
    documents[f"{FIRMWARE}/BMC"] = {"Id": "BMC", "Name": "BMC", "Version": bmc_version, "Updateable": True}
    documents[f"{FIRMWARE}/NIC"] = {"Id": "NIC", "Name": "NIC", "Version": "22.31.6", "Updateable": False}
    return documents


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS, drives=DRIVES).start()
    server.proxy.overlay.update(overlay())
    yield server
    server.close()


async def scanned(api, dsn, emulator, conn) -> tuple[dict, dict[str, str]]:
    """One scan's host result, and node id by system uuid."""
    # A walk with the inventory asks the (slow, Python) emulator some twenty resources: on a loaded CI machine
    # that took more than the default 15 s per host.
    async with running(DiscoveryScanner(dsn, box(), timeout_s=60)):
        result = await scan(api, ["bmc"])
    assert result["status"]["state"] == "completed", result
    [host] = result["status"]["results"]
    return host, {r["uuid"]: r["component_id"] for r in await conn.fetch(
        "SELECT uuid, component_id FROM smd.redfish_systems")}


async def listed(api, **params) -> list[str]:
    response = await api.get(BASE, params=params)
    assert response.status_code == 200, response.text
    return [item["metadata"]["id"] for item in response.json()["items"]]


@pytest.fixture
async def target(api, emulator):
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "bmc"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": await credential(api)}})


async def test_a_scan_stores_each_nodes_inventory_and_serves_it(api, dsn, emulator, conn, target):
    host, nodes = await scanned(api, dsn, emulator, conn)
    gpu_node, cpu_node = nodes[GPU_NODE["uuid"]], nodes[CPU_NODE["uuid"]]
    # The malformed members are the host's problems, not a failed scan; a missing collection is not a problem.
    assert host["state"] == "ok"
    assert f"could not read {system_path(GPU_NODE)}/Processors/Gone" in host["detail"]
    assert "dropped " + system_path(GPU_NODE) + "/Processors/FPGA0 Model" in host["detail"]
    assert "FPGA0 TotalCores" in host["detail"]
    assert "Memory" not in host["detail"]

    response = await api.get(f"{BASE}/{gpu_node}")
    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["componentId"] == gpu_node and response.headers["ETag"]
    inventory = spec["inventory"]
    by_type = {p["type"]: p for p in inventory["processors"]}
    assert set(by_type) == {"CPU", "GPU", "FPGA"}
    assert by_type["CPU"] == {"id": f"{system_path(GPU_NODE)}/Processors/CPU0", "type": "CPU", "manufacturer": "Intel",
                              "model": "Intel(R) Xeon(R) Platinum 8480+", "architecture": "x86",
                              "instructionSet": "x86-64", "cores": 56, "threads": 112, "maxSpeedMhz": 3800}
    assert "model" not in by_type["FPGA"] and "cores" not in by_type["FPGA"]
    assert [(m["capacityMib"], m["type"], m["speedMhz"]) for m in inventory["memory"]] == [(32768, "DDR5", 4800)] * 2
    # Drives and NICs are the emulator's own (its static storage driver, its EthernetInterfaces).
    [drive] = inventory["drives"]
    assert (drive["capacityBytes"], drive["mediaType"], drive["protocol"], drive["model"], drive["serial"]) == (
        3_840_000_000_000, "HDD", "NVMe", "C123", "1234570")
    assert [n["mac"] for n in inventory["nics"]] == [nic["mac"] for nic in GPU_NODE["nics"]]
    assert {(f["name"], f["version"], f.get("updateable")) for f in inventory["firmware"]} == {
        ("BIOS", "1.9.0", None), ("BMC", "2.9.1", True), ("NIC", "22.31.6", False)}
    assert spec["summary"] == {"processorModels": ["Intel(R) Xeon(R) Platinum 8480+"],
                               "gpuModels": ["NVIDIA H100 80GB HBM3"], "cores": 56, "memoryGib": 64.0,
                               "driveBytes": 3_840_000_000_000}

    other = (await api.get(f"{BASE}/{cpu_node}")).json()["spec"]
    assert other["inventory"]["memory"] == [] and other["inventory"]["drives"] == []
    assert other["summary"]["gpuModels"] == []
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.smd.hardware.created'") == 2
    assert (await api.get(f"{BASE}/{gpu_node}/changes")).json()["items"] == []


async def test_filters_find_and_exclude(api, dsn, emulator, conn, target):
    _, nodes = await scanned(api, dsn, emulator, conn)
    gpu_node, cpu_node = nodes[GPU_NODE["uuid"]], nodes[CPU_NODE["uuid"]]
    both = sorted([gpu_node, cpu_node])
    assert await listed(api) == both
    assert await listed(api, gpuModel="h100") == [gpu_node]  # a substring, in any case
    assert await listed(api, gpuModel="A100") == []
    assert await listed(api, processorModel="xeon") == both
    assert await listed(api, processorModel="EPYC") == []
    assert await listed(api, minMemoryGiB="64") == [gpu_node]
    assert await listed(api, minMemoryGiB="64.5") == []
    # Versions compare number by number: 1.9.0 is older than 1.10, which a text comparison would get wrong.
    assert await listed(api, firmware="bios", firmwareBelow="1.10") == [gpu_node]
    assert await listed(api, firmware="BIOS", firmwareBelow="1.9") == []
    assert await listed(api, firmware="BIOS", firmwareBelow="1.10.1") == both
    assert await listed(api, firmware="BMC") == both
    assert await listed(api, firmware="BMC", firmwareBelow="2.10") == both
    assert await listed(api, firmware="BMC", firmwareBelow="2.9.1") == []
    assert await listed(api, firmware="no such firmware") == []
    assert await listed(api, componentId=cpu_node) == [cpu_node]
    assert await listed(api, componentId=cpu_node, gpuModel="H100") == []
    page = (await api.get(BASE, params={"limit": 1, "offset": 1})).json()
    assert page["metadata"] == {"total": 2, "limit": 1, "offset": 1}
    assert [i["metadata"]["id"] for i in page["items"]] == both[1:]

    for params, field in (({"firmwareBelow": "1.2"}, "firmwareBelow"), ({"firmware": "BMC", "firmwareBelow": "new"},
                                                                        "firmwareBelow"),
                          ({"minMemoryGiB": "lots"}, "minMemoryGiB"), ({"minMemoryGiB": "-1"}, "minMemoryGiB"),
                          ({"gpuModel": "h100\x01"}, "gpuModel"), ({"gpuModel": "x" * 300}, "gpuModel"),
                          ({"componentId": "bad id!"}, "componentId")):
        problem = problem_of(await api.get(BASE, params=params), 400)
        assert problem["errors"][0]["field"] == field, problem
    problem_of(await api.get(BASE, params={"gpu": "h100"}), 400)  # not a filter this route takes
    problem_of(await api.get(f"{BASE}/node-nothere"), 404)
    problem_of(await api.get(f"{BASE}/node-nothere/changes"), 404)


async def test_a_rescan_records_what_changed(api, dsn, emulator, conn, target):
    _, nodes = await scanned(api, dsn, emulator, conn)
    gpu_node, cpu_node = nodes[GPU_NODE["uuid"]], nodes[CPU_NODE["uuid"]]
    first = (await api.get(f"{BASE}/{gpu_node}")).json()

    # The same hardware again: the scan time moves, nothing is recorded as changed.
    await scanned(api, dsn, emulator, conn)
    assert (await api.get(f"{BASE}/{gpu_node}/changes")).json()["metadata"]["total"] == 0
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.smd.hardware.changed'") == 0

    # The BMC's firmware is updated and the GPU is pulled; an admin's edit of the stored document is undone too.
    emulator.proxy.overlay.clear()
    emulator.proxy.overlay.update(overlay(bmc_version="2.10.0", gpu=False))
    await conn.execute("UPDATE smd.hardware SET document = jsonb_set(document, '{drives,0,model}', '\"edited\"') "
                       "WHERE component_id = $1", gpu_node)
    await scanned(api, dsn, emulator, conn)

    changes = (await api.get(f"{BASE}/{gpu_node}/changes")).json()
    assert changes["metadata"]["total"] == 1
    [change_set] = changes["items"]
    assert change_set["componentId"] == gpu_node and change_set["scanId"]
    found = {(c["category"], c["action"]): c for c in change_set["changes"]}
    assert set(found) == {("processors", "removed"), ("drives", "changed"), ("firmware", "changed")}
    assert found["processors", "removed"]["before"]["model"] == "NVIDIA H100 80GB HBM3"
    assert found["drives", "changed"]["before"] == {"model": "edited"}
    assert found["drives", "changed"]["after"] == {"model": "C123"}
    assert found["firmware", "changed"] == {"category": "firmware", "id": f"{FIRMWARE}/BMC", "action": "changed",
                                            "before": {"version": "2.9.1"}, "after": {"version": "2.10.0"}}
    [cpu_changes] = (await api.get(f"{BASE}/{cpu_node}/changes")).json()["items"]
    assert [(c["category"], c["action"]) for c in cpu_changes["changes"]] == [("firmware", "changed")]

    now = (await api.get(f"{BASE}/{gpu_node}")).json()
    assert now["spec"]["summary"]["gpuModels"] == [] and now["metadata"]["etag"] != first["metadata"]["etag"]
    assert await listed(api, gpuModel="H100") == []
    assert await listed(api, firmware="BMC", firmwareBelow="2.10") == []
    events = await conn.fetch("SELECT subject, data FROM events.outbox WHERE type = 'chamicore.smd.hardware.changed' "
                              "ORDER BY seq")
    assert {e["subject"]: e["data"]["changed"] + e["data"]["removed"] for e in events} == {gpu_node: 3, cpu_node: 1}


async def test_viewers_read_it_and_anonymous_callers_do_not(api, anonymous, dsn, emulator, conn, target):
    _, nodes = await scanned(api, dsn, emulator, conn)
    node = nodes[GPU_NODE["uuid"]]
    viewer = {"Authorization": f"Bearer {await token_for(anonymous, dsn, 'looker', ['viewer'])}"}
    for path in (BASE, f"{BASE}/{node}", f"{BASE}/{node}/changes"):
        assert (await anonymous.get(path, headers=viewer)).status_code == 200
        problem_of(await anonymous.get(path), 401)


async def test_the_cli_lists_and_filters_it(api, dsn, emulator, conn, target, admin_server, monkeypatch, tmp_path,
                                            capsys):
    _, nodes = await scanned(api, dsn, emulator, conn)
    gpu_node = nodes[GPU_NODE["uuid"]]
    server = admin_server()
    monkeypatch.setenv("CHAMICORE_ENDPOINT", server.url)
    monkeypatch.setenv("CHAMICORE_TOKEN", await token_for(server.url, dsn, "cli-viewer", ["viewer"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("CHAMICORE_DATA_DIR", str(tmp_path / "data"))
    from cli.main import run

    def chamicore(*argv: str) -> tuple[int, str, str]:
        try:
            code = run(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = chamicore("inventory", "hardware", "--gpu-model", "h100", "-o", "json")
    assert code == 0 and [i["metadata"]["id"] for i in json.loads(out)["items"]] == [gpu_node]
    code, out, _ = chamicore("inventory", "hardware", "--firmware", "BIOS", "--below", "1.10", "-o", "json")
    assert code == 0 and [i["metadata"]["id"] for i in json.loads(out)["items"]] == [gpu_node]
    code, out, _ = chamicore("inventory", "hardware")
    assert code == 0 and "NVIDIA H100 80GB HBM3" in out and "MEMORY GiB" in out and len(out.splitlines()) == 3
    code, out, _ = chamicore("inventory", "hardware", gpu_node, "-o", "json")
    assert code == 0 and json.loads(out)["spec"]["summary"]["memoryGib"] == 64.0
    code, _, err = chamicore("inventory", "hardware", "--below", "1.10")
    assert code == 2 and "--firmware" in err
    code, _, err = chamicore("inventory", "hardware", "--min-memory", "lots")
    assert code != 0 and "minMemoryGiB" in err
    code, out, _ = chamicore("inventory", "changes", gpu_node, "-o", "json")
    assert code == 0 and json.loads(out)["metadata"]["total"] == 0


async def test_a_collection_the_bmc_could_not_serve_keeps_the_last_scans_items(api, conn):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-1"}, "spec": {"type": "Node"}})
    cpu = Processor(id="/redfish/v1/Systems/1/Processors/CPU0", type="CPU", model="EPYC 9654", cores=96)
    dimm = MemoryModule(id="/redfish/v1/Systems/1/Memory/DIMM0", capacity_mib=65536)
    assert await store(conn, "node-1", Read(Hardware(processors=[cpu], memory=[dimm])), "scan-1") == 0
    # Memory answered 500 this time: what was there stays, and the processor's change is still recorded.
    faster = Processor(id=cpu.id, type="CPU", model="EPYC 9654", cores=96, max_speed_mhz=3700)
    assert await store(conn, "node-1", Read(Hardware(processors=[faster]), unread={"memory"}), "scan-2") == 1
    spec = (await api.get(f"{BASE}/node-1")).json()["spec"]
    assert spec["inventory"]["memory"] == [{"id": dimm.id, "capacityMib": 65536}]
    assert spec["summary"]["memoryGib"] == 64.0 and spec["scanId"] == "scan-2"
    [change_set] = (await api.get(f"{BASE}/node-1/changes")).json()["items"]
    assert change_set["changes"] == [{"category": "processors", "id": cpu.id, "action": "changed",
                                      "before": {"maxSpeedMhz": None}, "after": {"maxSpeedMhz": 3700}}]
