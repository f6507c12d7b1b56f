"""Locust scenarios: booting nodes against the boot path, admins against the admin API.

Runs in its own virtualenv (locust brings gevent, which should not share one
with the services), so this file imports nothing from Chamicore.

    python3 -m venv .venv-locust && .venv-locust/bin/pip install locust
    # nodes: first stage, own script, three cloud-init documents; 10% unknown MACs that retry
    .venv-locust/bin/locust -f bench/locustfile.py BootingNode --headless -u 2000 -r 500 -t 60s \\
        --host http://127.0.0.1:27778
    # admins: reads, writes, small bulk imports (a token from the bootstrap credentials)
    CHAMICORE_CREDENTIALS=~/.local/share/chamicore/credentials/admin.json \\
    .venv-locust/bin/locust -f bench/locustfile.py AdminUser --headless -u 20 -r 5 -t 60s \\
        --host http://127.0.0.1:27779

The nodes are expected to exist as `python -m bench.bootstorm` and
`bench/fleet.py` create them: node-<i> with MAC 02:00:<i as 4 hex octets>;
set CHAMICORE_BENCH_NODES to their number.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

from locust import FastHttpUser, between, task

NODES = int(os.environ.get("CHAMICORE_BENCH_NODES", "10000"))
UNKNOWN_SHARE = float(os.environ.get("CHAMICORE_BENCH_UNKNOWN", "0.1"))
DOCUMENTS = ("user-data", "meta-data", "vendor-data")


def mac_of(i: int) -> str:
    return f"02-00-{i >> 24 & 255:02x}-{i >> 16 & 255:02x}-{i >> 8 & 255:02x}-{i & 255:02x}"


class BootingNode(FastHttpUser):
    """One node's power-on, as iPXE and cloud-init ask it."""

    wait_time = between(1, 5)

    @task
    def boot(self) -> None:
        self.client.get("/boot/v1/boot.ipxe", name="boot.ipxe")
        if random.random() < UNKNOWN_SHARE:
            mac = "0e-" + "-".join(f"{random.randrange(256):02x}" for _ in range(5))
            for retry in (0, 1):
                with self.client.get(f"/boot/v1/bootscript?mac={mac}&retry={retry}", name="bootscript (unknown)",
                                     catch_response=True) as response:
                    if b"sleep" not in response.content:
                        response.failure("an unknown node must be told to wait and retry")
            return
        node = random.randint(1, NODES)
        with self.client.get(f"/boot/v1/bootscript?mac={mac_of(node)}", name="bootscript",
                             catch_response=True) as response:
            if b"kernel --name kernel" not in response.content:
                response.failure(f"node-{node} got no kernel line")
        for document in DOCUMENTS:
            # The seed URL of the node's script: bench.fleet.token_of(node), inlined (locust loads this file alone).
            self.client.get(f"/cloud-init/node-{node}/{node:032x}/{document}", name=f"cloud-init {document}")


class AdminUser(FastHttpUser):
    """An admin or a script: mostly reads, some edits, now and then a small import."""

    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        token = os.environ.get("CHAMICORE_TOKEN")
        if not token:
            credentials = json.loads(Path(os.path.expanduser(os.environ["CHAMICORE_CREDENTIALS"])).read_text())
            response = self.client.post("/auth/v1/token", data={
                "grant_type": "client_credentials", "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"]}, name="token")
            token = response.json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    @task(10)
    def list_page(self) -> None:
        self.client.get(f"/hsm/v2/State/Components?limit=100&offset={random.randrange(max(NODES - 100, 1))}",
                        headers=self.headers, name="list components")

    @task(10)
    def get_one(self) -> None:
        self.client.get(f"/hsm/v2/State/Components/node-{random.randint(1, NODES)}", headers=self.headers,
                        name="get component")

    @task(3)
    def patch_one(self) -> None:
        state = random.choice(("Ready", "On", "Standby"))
        self.client.patch(f"/hsm/v2/State/Components/node-{random.randint(1, NODES)}", json={"spec": {"state": state}},
                          headers=self.headers, name="patch component")

    @task(1)
    def import_batch(self) -> None:
        batch = uuid.uuid4().hex[:8]
        nodes = [{"id": f"load-{batch}-{i}", "role": "Compute"} for i in range(100)]
        self.client.post("/hsm/v2/import", json=nodes, headers=self.headers, name="import 100 nodes")
