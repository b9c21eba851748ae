"""The metrics of an agent run as ``serve`` runs it (``Service``): counts that outlive a
reload, reload results, malformed and throttled requests, build information, the listener
following ``[metrics] listen`` across reloads, and an agent that serves on when its metrics
address is taken."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent import __version__
from agent.devidp import DevIdentityProvider
from agent.lifecycle import Service
from agent.settings import settings_from_mapping
from agent.web import keys
from tests.deploy.support import SignInClient, agent_config_for
from tests.harness import free_port, write_config
from tests.metrics.support import samples, scrape_text, value

READER = "reader@contoso.example"


class Running:
    def __init__(self, service: Service, data: dict[str, Any], config: Path) -> None:
        self.service, self.data, self.config = service, data, config

    @property
    def url(self) -> str:
        return f"http://{self.data['server']['listen']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.data['metrics']['listen']}/metrics"

    async def scrape(self) -> dict[Any, float]:
        status, _, text = await scrape_text(self.metrics_url)
        assert 200 == status, text
        return samples(text)

    async def reload_with(self, **sections: dict[str, Any]) -> bool:
        for name, values in sections.items():
            self.data.setdefault(name, {}).update(values)
        write_config(self.config, self.data)
        return await self.service.reload()


@pytest.fixture
async def running(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[Running]:
    """The agent as ``serve`` runs it, with metrics on and its admin socket in a temporary
    directory (never the service's /run path)."""
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    data["metrics"] = {"listen": f"127.0.0.1:{free_port()}"}
    data["session"]["sign_ins_per_minute_per_client"] = 2
    with tempfile.TemporaryDirectory(prefix="adm", dir="/tmp") as run_dir:
        data["server"]["admin_socket"] = f"{run_dir}/admin.sock"
        config = write_config(tmp_path / "agent.toml", data)
        service = Service(settings_from_mapping(data, source=str(config)))
        await service.start()
        try:
            await service.app[keys.TENANT].wait_ready() if service.app else None
            yield Running(service, data, config)
        finally:
            await service.stop()


async def test_build_info_and_process_metrics(running: Running) -> None:
    """The exposition names the agent's version, its start time and the process's memory
    and CPU (the library's process collector, on the agent's own registry)."""
    status, content_type, text = await scrape_text(running.metrics_url)
    assert 200 == status
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(text)
    build = [labels for (name, labels) in found if name == "sensor_sso_build_info"]
    assert 1 == len(build) and ("version", __version__) in build[0]
    assert value(found, "process_resident_memory_bytes")
    assert value(found, "sensor_sso_start_time_seconds")
    assert 1 == value(found, "sensor_sso_ready")


async def test_counters_outlive_a_reload_and_reloads_count(running: Running,
                                                          idp: DevIdentityProvider) -> None:
    """A sign-in counted before a reload is still counted after it; an invalid file counts
    as rejected, a valid one as applied and moves the last success time."""
    client = SignInClient(running.url, idp)
    try:
        await client.sign_in(READER)
    finally:
        await client.close()
    before = await running.scrape()
    assert 1 == value(before, "sensor_sso_sign_ins_total", method="sso", outcome="succeeded")
    started = value(before, "sensor_sso_config_last_reload_success_timestamp_seconds")
    assert started is not None
    assert not await running.reload_with(session={"idle_timeout": "soon"})
    found = await running.scrape()
    assert 1 == value(found, "sensor_sso_config_reloads_total", result="rejected")
    assert 0 == value(found, "sensor_sso_config_reloads_total", result="applied")
    await asyncio.sleep(0.01)
    assert await running.reload_with(session={"idle_timeout": "20m"})
    found = await running.scrape()
    assert 1 == value(found, "sensor_sso_config_reloads_total", result="applied")
    assert (value(found, "sensor_sso_config_last_reload_success_timestamp_seconds")
            or 0) > started
    assert 1 == value(found, "sensor_sso_sign_ins_total", method="sso", outcome="succeeded")
    assert 1 == value(found, "sensor_sso_sessions", role="read_only", method="sso")


async def test_task_failures_outlive_a_reload(running: Running) -> None:
    """A background task's failure, counted by the application's supervisor, is still
    counted after a reload replaced that application (and its supervisor)."""
    assert running.service.app is not None
    running.service.app[keys.SUPERVISOR].fail("audit_bursts", RuntimeError("boom"))
    for _ in range(100):
        if running.service.app[keys.SUPERVISOR].failures()["audit_bursts"]:
            break
        await asyncio.sleep(0.05)
    assert await running.reload_with(session={"idle_timeout": "20m"})
    found = await running.scrape()
    assert 1 == value(found, "sensor_sso_task_failures_total", task="audit_bursts")
    assert 0 == value(found, "sensor_sso_task_failures_total", task="journal_flush")


async def test_malformed_and_throttled_requests(running: Running) -> None:
    """A request with a broken header line gets the front door's 400 and counts as
    malformed; sign-in starts beyond the per-client limit get 429 and count as throttled
    (sso_start) and as refusals of reason too_many_sign_ins."""
    host, port = running.data["server"]["listen"].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
    await writer.drain()
    head = await reader.read(64)
    writer.close()
    assert b" 400 " in head.split(b"\r\n", 1)[0]
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(3):
            async with http.get(f"{running.url}/auth/sso/start", allow_redirects=False) as r:
                statuses.append(r.status)
    assert [302, 302, 429] == statuses
    found = await running.scrape()
    assert 1 == value(found, "sensor_sso_malformed_requests_total")
    assert 1 == value(found, "sensor_sso_throttled_requests_total", what="sso_start")
    assert 1 == value(found, "sensor_sso_sign_in_refusals_total", method="sso",
                      reason="too_many_sign_ins")


async def test_the_listener_follows_a_reload(running: Running) -> None:
    """A reload that moves [metrics] listen serves the same counts at the new address and
    nothing at the old; one that empties it stops the listener."""
    old = running.metrics_url
    assert await running.reload_with(metrics={"listen": f"127.0.0.1:{free_port()}"})
    found = await running.scrape()
    assert 1 == value(found, "sensor_sso_config_reloads_total", result="applied")
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape_text(old)
    new = running.metrics_url
    assert await running.reload_with(metrics={"listen": ""})
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape_text(new)


async def test_a_taken_metrics_address_is_logged_and_the_agent_serves_on(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """[metrics] listen on an address something else holds: one metrics_listener_unavailable
    error saying what to do, and the agent is ready and answers sign-ins all the same."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = free_port()
        data = agent_config_for(idp, port, tmp_path / "state")
        data["metrics"] = {"listen": f"127.0.0.1:{busy.getsockname()[1]}"}
        data["server"]["admin_socket"] = str(tmp_path / "admin.sock")[-100:]
        service = Service(settings_from_mapping(data))
        with capture_logs() as logs:
            await service.start()
        try:
            errors = [e for e in logs if e["event"] == "metrics_listener_unavailable"]
            assert 1 == len(errors) and "fix" in errors[0]
            assert service.monitor.problem
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert 200 == resp.status
        finally:
            await service.stop()
