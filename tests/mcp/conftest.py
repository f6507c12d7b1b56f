"""MCP clients for the tests: the SDK's own, over streamable HTTP to a real admin server, and over stdio to
`chamicore mcp` (which relays to that server)."""

from __future__ import annotations

import contextlib
import sys

import httpx
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers.paths import ROOT, tmp_root
from tests.helpers.tokens import token_for

READ_TOOLS = {
    "cluster.health_summary", "smd.components.list", "smd.components.get", "smd.groups.list", "smd.groups.get",
    "smd.hardware.list", "smd.hardware.changes",
    "bss.bootparams.list", "bss.bootparams.get", "cloudinit.payloads.list", "cloudinit.payloads.get",
    "power.status.get", "power.transitions.list", "power.transitions.get", "discovery.targets.list",
    "discovery.targets.get", "discovery.scans.list", "discovery.scans.get", "discovery.drivers.list",
    "bss.profiles.list", "bss.profiles.get", "boot.node.profile",
    "boot.script.preview", "boot.stages.summary", "boot.stages.list", "audit.list",
}
WRITE_TOOLS = {
    "smd.groups.members.add", "smd.groups.members.remove", "bss.bootparams.upsert", "bss.bootparams.delete",
    "bss.profiles.upsert", "bss.profiles.delete",
    "cloudinit.payloads.upsert", "cloudinit.payloads.delete", "power.transitions.create", "power.transitions.abort",
    "power.transitions.wait", "discovery.targets.create", "discovery.targets.update", "discovery.targets.delete",
    "discovery.target.scan", "discovery.scan.trigger", "discovery.scan.delete", "nodes.provision",
}
READ_WRITE = {"CHAMICORE_MCP_MODE": "read-write", "CHAMICORE_MCP_ENABLE_WRITE": "true"}


@contextlib.asynccontextmanager
async def http_session(url: str, token: str):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(30, read=120)) as http, \
            streamable_http_client(url + "/mcp", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def bridge_env(url: str, token: str | None, **env: str) -> dict[str, str]:
    """What an agent's config gives `chamicore mcp`: the endpoint and a token, with a home of its own (no CLI
    config file to fall back on)."""
    home = tmp_root()
    values = {"CHAMICORE_ENDPOINT": url, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
              "XDG_CACHE_HOME": str(home / "cache"), "CHAMICORE_DATA_DIR": str(home / "data"), **env}
    if token:
        values["CHAMICORE_MCP_TOKEN"] = token
    return values


@contextlib.asynccontextmanager
async def stdio_session(url: str, token: str, **env: str):
    server = StdioServerParameters(command=sys.executable, args=["-m", "cli.main", "mcp"],
                                   env=bridge_env(url, token, **env), cwd=ROOT)
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@pytest.fixture(params=["http", "stdio"])
def transport(request) -> str:
    return request.param


@pytest.fixture
def connect(transport):
    """`connect(server, token, **bridge_env)`: an initialised MCP session over the test's transport."""
    def open_session(server, token: str, **env: str):
        return http_session(server.url, token) if transport == "http" else stdio_session(server.url, token, **env)

    return open_session


@pytest.fixture
async def rest(admin_server_rw, dsn):
    """An admin's REST client of the read-write server, to seed and check what the tools did."""
    token = await token_for(admin_server_rw.url, dsn, "seeder", ["admin"])
    async with httpx.AsyncClient(base_url=admin_server_rw.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as client:
        yield client


@pytest.fixture
def admin_server_rw(admin_server):
    return admin_server(**READ_WRITE)
