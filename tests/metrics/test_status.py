"""``sensor-sso-agent status`` against a real agent process over its admin socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from agent.devidp import DevIdentityProvider, Fault
from tests.deploy.support import REPO, AgentProcess, SignInClient, agent_config_for
from tests.harness import free_port, write_config

READER, NOGROUP = "reader@contoso.example", "nogroup@contoso.example"


@pytest.fixture
def agent(tmp_path: Path, idp: DevIdentityProvider) -> Iterator[AgentProcess]:
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    data["server"]["admin_socket"] = str(tmp_path / "admin.sock")
    data["metrics"] = {"listen": f"127.0.0.1:{free_port()}"}
    process = AgentProcess(write_config(tmp_path / "agent.toml", data), port)
    try:
        yield process
    finally:
        process.kill()


async def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agent", "status", "--config", str(config),
                         *args], capture_output=True, text=True, timeout=60, check=False,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


async def test_status_reads_the_agent_at_a_glance(agent: AgentProcess,
                                                  idp: DevIdentityProvider) -> None:
    """After one sign-in and one refusal: which agent answered (pid, configuration, listen,
    metrics), ready, the session by role and method, the last hour's sign-ins and refusals
    by reason, the dependencies up, the re-validation lag; exit 0. --json carries the same."""
    await agent.wait_healthy()
    client, other = SignInClient(agent.url, idp), SignInClient(agent.url, idp)
    try:
        await client.sign_in(READER)
        assert 403 == (await other.get(await other.authorize(NOGROUP)))[0]
    finally:
        await client.close()
        await other.close()
    done = await status(agent.config)
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    assert f"sensor-sso-agent {__version__}, pid {agent.proc.pid}, up " in out
    assert f"configuration: {agent.config}" in out
    assert f"listening on:  127.0.0.1:{agent.port}" in out
    assert "ready:         yes" in out
    assert "sessions:      1 (read_only/sso 1)" in out
    assert "last hour:     signed in: sso 1; refused: sso 1" in out
    assert "  refused 1 x sso:no_role" in out
    assert "dependency:    token_endpoint up" in out
    assert "re-validation: lag " in out and "(interval 5m)" in out
    assert "session state: writable" in out
    assert READER not in out and NOGROUP not in out  # counts, never names
    data = json.loads((await status(agent.config, "--json")).stdout)
    assert agent.proc.pid == data["agent"]["pid"]
    assert [{"role": "read_only", "method": "sso", "count": 1}] == data["sessions"]
    assert {"sso:no_role": 1} == data["last_hour"]["refusals_by_reason"]


async def test_status_says_what_is_degraded_and_exits_2(agent: AgentProcess,
                                                       idp: DevIdentityProvider) -> None:
    """A sign-in whose code redemption times out (a transport failure) leaves Entra ID
    degraded: status names it, the dependency is down with why, and the exit status is 2."""
    await agent.wait_healthy()
    idp.faults["token"] = Fault(delay=5.0, times=1)  # entra.timeout is 3 s
    client = SignInClient(agent.url, idp)
    try:
        assert 502 == (await client.get(await client.authorize(READER)))[0]
    finally:
        await client.close()
    done = await status(agent.config)
    assert 2 == done.returncode, done.stdout + done.stderr
    assert "degraded:      Entra ID: " in done.stdout
    assert "dependency:    token_endpoint DOWN: " in done.stdout


async def test_status_without_an_agent(tmp_path: Path, idp: DevIdentityProvider) -> None:
    """No agent on the admin socket: exit 1 and what to check."""
    data = agent_config_for(idp, free_port(), tmp_path / "state")
    data["server"]["admin_socket"] = str(tmp_path / "admin.sock")
    done = await status(write_config(tmp_path / "agent.toml", data))
    assert 1 == done.returncode
    assert "cannot reach the agent" in done.stderr and "systemctl status" in done.stderr
