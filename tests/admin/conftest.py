"""The admin API in-process (ASGI, with its lifespan) against a fresh database."""

import httpx
import pytest

from admin_api.app import create_app
from core.config import load_config


@pytest.fixture
async def api(dsn):
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
            yield client


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
