"""Finding 2: binding a BMC credential to an address is as good as reading it.

The operator role cannot read a credential's secret, yet it could point a
discovery target or a Redfish endpoint at an address of its choosing with
any credentialId, and the scanner (or the power engine) then sent the
secret there, over plain http too.
"""

import asyncio
import http.server
import threading

import httpx
import pytest

from sync.discovery.scanner import DiscoveryScanner
from sync.power.engine import PowerEngine
from tests.helpers.api import create, credential, problem_of, scan
from tests.helpers.keys import box
from tests.helpers.redfish import PASSWORD
from tests.helpers.tasks import running
from tests.helpers.tokens import token_for


class Listener:
    """An attacker's "BMC": records every request's Authorization header, over plain http."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                listener.seen.append(self.headers.get("Authorization"))
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def credentials_seen(self) -> list[str]:
        return [header for header in self.seen if header]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
async def operator(admin_app, anonymous, dsn):
    token = await token_for(anonymous, dsn, "ops-bot", ["operator"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def needs_read_credentials(response) -> None:
    body = problem_of(response, 403)
    assert "read:credentials" in body["detail"], body
    assert body["type"] == "urn:chamicore:problem:insufficient-scope"


async def test_the_operator_cannot_read_the_secret(operator, api):
    await credential(api)
    needs_read_credentials(await operator.get("/auth/v1/credentials/bmc-cred/secret"))


async def test_an_operator_cannot_point_a_discovery_target_at_a_new_address(operator, api, dsn, conn, listener):
    cred = await credential(api)
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "rack1"}, "spec": {
        "driver": "redfish", "address": "10.1.0.0/29", "credentialId": cred}})

    needs_read_credentials(await operator.post("/discovery/v1/targets", json={"metadata": {"id": "steal"}, "spec": {
        "driver": "redfish", "address": listener.url, "credentialId": cred}}))
    needs_read_credentials(await operator.patch("/discovery/v1/targets/rack1", json={
        "spec": {"address": listener.url}}))
    needs_read_credentials(await operator.patch("/discovery/v1/targets/rack1", json={
        "spec": {"address": "10.1.0.0/28"}}))  # a wider range holds hosts the credential was never sent to
    needs_read_credentials(await operator.patch("/discovery/v1/targets/rack1", json={
        "spec": {"address": "http://10.1.0.1"}}))  # the same host, in clear text
    needs_read_credentials(await operator.patch("/discovery/v1/targets/rack1", json={
        "spec": {"insecure": True}}))  # the same hosts, to whoever answers
    await create(operator, "/discovery/v1/targets", {"metadata": {"id": "bare"}, "spec": {
        "driver": "redfish", "address": listener.url}})  # without a credential: nothing to steal
    needs_read_credentials(await operator.patch("/discovery/v1/targets/bare", json={
        "spec": {"credentialId": cred}}))
    rows = await conn.fetch("SELECT id, address, credential_id, insecure FROM discovery.targets ORDER BY id")
    assert [tuple(r) for r in rows] == [("bare", listener.url, None, False), ("rack1", "10.1.0.0/29", cred, False)]

    # What the credential is already bound to stays the operator's to manage.
    changed = await operator.patch("/discovery/v1/targets/rack1", json={"spec": {"description": "rack 1",
                                                                                 "scheduleS": 3600}})
    assert changed.status_code == 200, changed.text
    await create(operator, "/discovery/v1/targets", {"metadata": {"id": "rack1-first"}, "spec": {
        "driver": "redfish", "address": "10.1.0.1-10.1.0.2", "credentialId": cred}})
    # An admin (read:credentials) binds it where it must go.
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "rack2"}, "spec": {
        "driver": "redfish", "address": "10.2.0.1", "credentialId": cred}})

    async with running(DiscoveryScanner(dsn, box(), timeout_s=2)):
        await scan(api, ["bare"])
    assert listener.seen and listener.credentials_seen() == []


async def test_an_operator_cannot_point_a_redfish_endpoint_at_a_new_address(operator, api, conn, listener):
    cred = await credential(api)
    for bmc in ("bmc-1", "bmc-2"):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": bmc}, "spec": {"type": "BMC"}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-1"}, "spec": {"type": "Node"}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-1"}, "spec": {
        "address": "https://10.1.0.1", "credentialId": cred}})
    base = "/hsm/v2/Inventory/RedfishEndpoints"

    needs_read_credentials(await operator.patch(f"{base}/bmc-1", json={"spec": {"address": listener.url}}))
    needs_read_credentials(await operator.patch(f"{base}/bmc-1", json={"spec": {"address": "http://10.1.0.1"}}))
    needs_read_credentials(await operator.patch(f"{base}/bmc-1", json={"spec": {"insecure": True}}))
    needs_read_credentials(await operator.post(base, json={"metadata": {"id": "bmc-2"}, "spec": {
        "address": listener.url, "credentialId": cred}}))
    await create(operator, base, {"metadata": {"id": "bmc-2"}, "spec": {"address": listener.url}})
    needs_read_credentials(await operator.patch(f"{base}/bmc-2", json={"spec": {"credentialId": cred}}))
    rows = await conn.fetch("SELECT id, address, credential_id, insecure FROM smd.redfish_endpoints ORDER BY id")
    assert [tuple(r) for r in rows] == [("bmc-1", "https://10.1.0.1", cred, False),
                                        ("bmc-2", listener.url, None, False)]

    # The same binding, said differently, and the rest of the endpoint: still the operator's.
    same = await operator.patch(f"{base}/bmc-1", json={"spec": {"address": "10.1.0.1", "systems": [
        {"componentId": "node-1", "path": "/redfish/v1/Systems/1"}]}})
    assert same.status_code == 200, same.text
    assert listener.credentials_seen() == []


async def test_a_credential_goes_over_http_only_when_the_address_says_http(api, dsn, conn, listener):
    """A bare host:port is https: the secret never goes in clear text to a plain-http listener."""
    cred = await credential(api)
    bare = f"127.0.0.1:{listener.port}"
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "bare-host"}, "spec": {
        "driver": "redfish", "address": bare, "credentialId": cred}})
    async with running(DiscoveryScanner(dsn, box(), timeout_s=2)):
        result = await scan(api, ["bare-host"])
    assert result["status"]["results"][0]["host"] == f"https://{bare}"
    assert result["status"]["state"] == "failed"

    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-1"}, "spec": {"type": "BMC"}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-1"}, "spec": {
        "type": "Node", "parentId": "bmc-1"}})
    endpoint = await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-1"}, "spec": {
        "address": bare, "credentialId": cred, "systems": [{"componentId": "node-1",
                                                            "path": "/redfish/v1/Systems/1"}]}})
    assert endpoint["spec"]["address"] == f"https://{bare}"
    async with running(PowerEngine(dsn, box(), poll_s=0.1, timeout_s=2)):
        await _wait_for_status(conn, "node-1")
    assert PASSWORD not in str(listener.seen) and listener.credentials_seen() == []


async def _wait_for_status(conn, node_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not await conn.fetchval("SELECT error FROM power.status WHERE node_id = $1", node_id):
        assert asyncio.get_running_loop().time() < deadline, "the power engine never refreshed the node's status"
        await asyncio.sleep(0.1)

