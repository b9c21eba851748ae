"""Debian's Prometheus scrapes a real agent process: the target is up, the agent's families
arrive, the shipped rules load; ``promtool check metrics`` finds nothing to say about the
agent's exposition."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.devidp import DevIdentityProvider
from tests.deploy.support import AgentProcess, SignInClient, agent_config_for
from tests.harness import free_port, write_config
from tests.metrics.support import scrape_text
from tests.metrics.test_rules import RULES
from tests.needs import need

READER = "reader@contoso.example"


@pytest.fixture
def agent(tmp_path: Path, idp: DevIdentityProvider) -> Iterator[tuple[AgentProcess, str]]:
    """``python -m agent serve`` with [metrics] listen; yields it and its metrics address."""
    port, metrics = free_port(), f"127.0.0.1:{free_port()}"
    data = agent_config_for(idp, port, tmp_path / "state")
    data["metrics"] = {"listen": metrics}
    data["server"]["admin_socket"] = str(tmp_path / "admin.sock")
    process = AgentProcess(write_config(tmp_path / "agent.toml", data), port)
    try:
        yield process, metrics
    finally:
        process.kill()


async def test_promtool_finds_nothing_to_say(agent: tuple[AgentProcess, str],
                                             idp: DevIdentityProvider) -> None:
    """After a sign-in, a refusal and /auth/check answers (so that every family has
    samples), ``promtool check metrics`` on the agent's exposition exits 0 and prints
    nothing: names, suffixes, help texts and types are as Prometheus wants them."""
    tool = shutil.which("promtool")
    need(tool, "no promtool (Debian's prometheus package ships it)")
    assert tool is not None
    process, metrics = agent
    await process.wait_healthy()
    client = SignInClient(process.url, idp)
    try:
        await client.sign_in(READER)
        assert 200 == (await client.get("/auth/check"))[0]
        assert 403 == (await client.get("/auth/check?role=admin"))[0]
    finally:
        await client.close()
    status, _, text = await scrape_text(f"http://{metrics}/metrics")
    assert 200 == status
    assert "sensor_sso_auth_check_seconds_bucket" in text
    done = await asyncio.to_thread(
        subprocess.run, [tool, "check", "metrics"], input=text, capture_output=True,
        text=True, timeout=60, check=False)
    assert (0, "", "") == (done.returncode, done.stdout, done.stderr)


def prometheus_config(path: Path, target: str) -> Path:
    path.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "sensor-sso-agent",
                            "static_configs": [{"targets": [target]}]}],
    }))
    return path


async def api(http: aiohttp.ClientSession, base: str, path: str,
              **params: str) -> Any:
    async with http.get(f"{base}/api/v1/{path}", params=params) as resp:
        body = await resp.json()
        assert "success" == body["status"], body
        return body["data"]


async def test_prometheus_scrapes_the_agent(tmp_path: Path,
                                            agent: tuple[AgentProcess, str]) -> None:
    """Prometheus (its own configuration, data directory and port on 127.0.0.1, stopped at
    the end) scrapes the agent: the target is up, ``up`` is 1 and sensor_sso_build_info
    and sensor_sso_ready arrive; the shipped alert rules load without error."""
    binary = shutil.which("prometheus")
    need(binary, "no prometheus (Debian's prometheus package)")
    assert binary is not None
    process, metrics = agent
    await process.wait_healthy()
    web = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    # A Popen of the packaged binary with fixed arguments; starting it is quick.
    prometheus = subprocess.Popen(  # noqa: S603, ASYNC220
        [binary, f"--config.file={prometheus_config(tmp_path / 'prometheus.yml', metrics)}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={web}",
         "--storage.tsdb.retention.time=1h"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{web}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    targets = await api(http, base, "targets")
                    active = targets["activeTargets"]
                    if active and active[0]["health"] == "up":
                        break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
                await asyncio.sleep(0.5)
            assert metrics == active[0]["labels"]["instance"]
            up = await api(http, base, "query", query='up{job="sensor-sso-agent"}')
            assert ["1"] == [r["value"][1] for r in up["result"]]
            info = await api(http, base, "query", query="sensor_sso_build_info")
            assert 1 == len(info["result"])
            ready = await api(http, base, "query", query="sensor_sso_ready")
            assert ["1"] == [r["value"][1] for r in ready["result"]]
            rules = await api(http, base, "rules")
            loaded = [r for g in rules["groups"] for r in g["rules"]]
            assert 6 == len(loaded)
            assert all(r["health"] != "err" for r in loaded), loaded
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait(10)
        log.close()
