"""Calls to the admin API that tests share: create, read a problem, register a BMC credential,
and wait for a discovery scan or a power transition to finish."""

from __future__ import annotations

import asyncio

from tests.helpers.redfish import PASSWORD, USERNAME

NODE = {"metadata": {"id": "node-1"}, "spec": {"type": "Node", "state": "Ready", "role": "Compute", "nid": 1,
                                               "location": {"rack": "R1", "unit": 4}}}


async def create(api, path, body, status=201):
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def problem_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def credential(api, secret=PASSWORD, credential_id="bmc-cred"):
    await create(api, "/auth/v1/credentials", {"id": credential_id, "username": USERNAME, "secret": secret})
    return credential_id


async def scan(api, targets, timeout=60.0, states=("completed", "failed", "cancelled")):
    started = await create(api, "/discovery/v1/scans", {"targets": targets})
    return await wait_scan(api, started["metadata"]["id"], timeout, states)


async def wait_scan(api, scan_id, timeout=60.0, states=("completed", "failed", "cancelled")):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await api.get(f"/discovery/v1/scans/{scan_id}")).json()
        if body["status"]["state"] in states:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def wait_transition(api, transition_id, timeout=60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await api.get(f"/power/v1/transitions/{transition_id}")).json()
        if body["state"] in ("completed", "aborted"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.2)
