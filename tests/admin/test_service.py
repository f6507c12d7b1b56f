"""Health, readiness, version, metrics, OpenAPI and the docs page."""

from tests.helpers.api import create
from tests.helpers.exposition import families


async def test_health_readiness_version(api):
    assert (await api.get("/health")).json()["status"] == "ok"
    ready = (await api.get("/readiness")).json()
    assert ready["status"] == "ready" and ready["schemaVersion"] >= 5
    version = (await api.get("/version")).json()
    assert version["schemaVersion"] == ready["schemaVersion"] and version["version"]


async def test_readiness_reports_pending_migrations(api, conn):
    await conn.execute("DELETE FROM public.schema_migrations WHERE version = (SELECT max(version) FROM "
                       "public.schema_migrations)")
    response = await api.get("/readiness")
    assert response.status_code == 503 and "migrate" in response.json()["hint"]


async def test_openapi_is_generated_from_the_handlers_types(api):
    document = (await api.get("/api/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    post = document["paths"]["/hsm/v2/State/Components"]["post"]
    assert post["x-required-scope"] == "write:smd"
    assert post["security"] == [{"bearer": ["write:smd"]}]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ResourceRequest_ComponentCreateSpec_")
    spec = document["components"]["schemas"]["ComponentSpec"]
    assert spec["required"] == ["type"] and spec["additionalProperties"] is False
    assert set(document["components"]["schemas"]["ComponentType"]["enum"]) >= {"Node", "BMC", "Switch"}
    scopes = {op.get("x-required-scope") for path in document["paths"].values() for op in path.values()}
    assert {"read:smd", "write:smd", "read:bss", "write:bss", "read:cloudinit", "write:cloudinit"} <= scopes


async def test_docs_are_served_locally(api):
    page = await api.get("/api/docs")
    assert page.status_code == 200 and "/api/docs/assets/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/api/openapi.json", "")  # no CDN
    asset = await api.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


async def test_metrics_count_by_route_template(api):
    node = "x1000c0s0b0n0"
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": node}, "spec": {"type": "Node"}})
    await api.get(f"/hsm/v2/State/Components/{node}")
    await api.get("/hsm/v2/State/Components/missing")
    found = families((await api.get("/metrics")).text)
    requests = found["chamicore_admin_requests"]
    assert requests.type == "counter"
    assert not [s for s in requests.samples if node in s.labels["route"] or "missing" in s.labels["route"]]
    by = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value for s in requests.samples}
    assert by[("/hsm/v2/State/Components/{id}", "GET", "200")] == 1
    assert by[("/hsm/v2/State/Components/{id}", "GET", "404")] == 1
    assert by[("/hsm/v2/State/Components", "POST", "201")] == 1
    latency = found["chamicore_admin_request_seconds"]
    assert latency.type == "histogram"
    counts = {(s.labels["route"], s.labels["method"]): s.value for s in latency.samples if s.name.endswith("_count")}
    assert counts[("/hsm/v2/State/Components/{id}", "GET")] == 2


async def test_telemetry_endpoints(api, conn):
    for i in (1, 2, 3):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"n{i}"}, "spec": {"type": "Node"}})
    await conn.execute("""INSERT INTO bss.boot_telemetry (component_id, endpoint, source_ip, seen_at, requests) VALUES
        ('n1', 'bootscript', '10.0.0.1', now(), 3), ('n2', 'cloud-init', NULL, now() - interval '2 hours', 4)""")
    summary = (await api.get("/boot/v1/telemetry/summary?minutes=30")).json()
    assert (summary["nodes"], summary["seenInWindow"], summary["seenEarlier"], summary["neverSeen"]) == (3, 1, 1, 1)
    assert summary["nodesInWindowByEndpoint"] == {"bootscript": 1}
    listed = (await api.get("/boot/v1/telemetry?seenWithin=30")).json()
    assert [i["componentId"] for i in listed["items"]] == ["n1"] and listed["items"][0]["sourceIp"] == "10.0.0.1"
    assert (await api.get("/boot/v1/telemetry/n2")).json()["requests"] == 4
    assert (await api.get("/boot/v1/telemetry/n3")).status_code == 404


async def test_sync_status_endpoint(api, conn):
    await conn.execute("INSERT INTO sync.status (job, instance, state, last_success, counts) "
                       "VALUES ('outbox', 'host-a:1', 'active', now(), '{\"published\": 5}'), "
                       "('outbox', 'host-b:2', 'standby', NULL, '{}')")
    replicas = (await api.get("/sync/v1/status")).json()
    assert [(r["instance"], r["state"]) for r in replicas] == [("host-a:1", "active"), ("host-b:2", "standby")]
    assert replicas[0]["counts"] == {"published": 5} and replicas[0]["lastSuccess"]
