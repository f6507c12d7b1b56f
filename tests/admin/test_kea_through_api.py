"""Interfaces created, changed and deleted through the admin API reach Kea's reservations."""

import asyncio

from sync.kea import KeaSync
from tests.helpers.kea import eventually
from tests.helpers.tasks import stop_task


async def test_admin_api_changes_reach_kea(api, dsn, kea):  # noqa: F811
    sync = KeaSync(dsn, kea.url, "http://10.1.0.1:27778", next_server="10.1.0.1")
    task = asyncio.create_task(sync.run())
    try:
        created = await api.post("/hsm/v2/State/Components", json={"metadata": {"id": "node-k"}, "spec": {
            "type": "Node", "networkInterfaces": [{"macAddr": "52-54-00-00-0F-01",
                                                   "ipAddrs": [{"ipAddress": "10.1.0.5"}]}]}})
        assert created.status_code == 201, created.text
        await eventually(lambda: kea.reservations().get("52:54:00:00:0f:01", (0, ""))[1] == "10.1.0.5")
        patched = await api.patch("/hsm/v2/Inventory/EthernetInterfaces/525400000f01",
                                  json={"spec": {"ipAddrs": [{"ipAddress": "10.2.0.5"}]}})
        assert patched.status_code == 200, patched.text
        await eventually(lambda: kea.reservations().get("52:54:00:00:0f:01", (0, ""))[:2] == (2, "10.2.0.5"))
        assert (await api.delete("/hsm/v2/State/Components/node-k")).status_code == 204
        await eventually(lambda: "52:54:00:00:0f:01" not in kea.reservations())
    finally:
        await stop_task(task)
