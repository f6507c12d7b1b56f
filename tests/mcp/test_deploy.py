"""The deployments serve MCP read-only unless an operator turns both keys."""

import pytest
from helm_python import HelmRenderError

from core.config import load_config
from tests.helpers.paths import ROOT
from tests.test_deploy_helm import EXTERNAL, environment, render


def test_helm_is_read_only_by_default_and_writes_take_both_keys():
    env = environment(render(EXTERNAL))
    assert (env["CHAMICORE_MCP_MODE"], env["CHAMICORE_MCP_ENABLE_WRITE"]) == ("read-only", "false")
    assert load_config(env).mcp_mode == "read-only"
    env = environment(render({**EXTERNAL, "mcp": {"mode": "read-write", "enableWrite": True}}))
    config = load_config(env)
    assert (config.mcp_mode, config.mcp_enable_write) == ("read-write", True)
    with pytest.raises(HelmRenderError, match="mcp.enableWrite: true"):
        render({**EXTERNAL, "mcp": {"mode": "read-write"}})


def test_systemd_is_read_only_by_default():
    lines = (ROOT / "deploy" / "systemd" / "chamicore.env").read_text().splitlines()
    assert "CHAMICORE_MCP_MODE=read-only" in lines
    assert not any(line.startswith("CHAMICORE_MCP_ENABLE_WRITE") for line in lines)  # commented out
