"""The agent as systemd runs it: notifications, graceful stop, SIGHUP reload, TLS, release check."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest

from agent.__main__ import main
from agent.devidp import DevIdentityProvider, Fault
from agent.lifecycle import Service
from agent.settings import settings_from_mapping
from agent.systemd import Notifier
from tests.deploy.support import (
    AgentProcess,
    NotifySocket,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
    write_server_cert,
)

READER = "reader@contoso.example"


def start_agent(tmp_path: Path, idp: DevIdentityProvider, notify: NotifySocket | None = None,
                watchdog_usec: int | None = None, **sections: dict[str, object]
                ) -> tuple[AgentProcess, dict[str, dict[str, object]]]:
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    for section, values in sections.items():
        data[section].update(values)
    config = write_config(tmp_path / "agent.toml", data)
    env = {"NOTIFY_SOCKET": notify.path} if notify else {}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    scheme = "https" if "tls_cert_file" in data["server"] else "http"
    return AgentProcess(config, port, env, scheme=scheme), data


async def test_ready_once_keys_are_loaded_then_watchdog_then_stopping(
        tmp_path: Path, idp: DevIdentityProvider, notify_socket: NotifySocket) -> None:
    """READY=1 once discovery and keys are loaded, then watchdog pings, then STOPPING on SIGTERM."""
    agent, _ = start_agent(tmp_path, idp, notify_socket, watchdog_usec=400_000)
    try:
        ready = await notify_socket.wait_for("READY")
        assert ready["READY"] == "1"
        assert "identity provider ready" in ready["STATUS"]
        assert idp.requests["discovery"] >= 1 and idp.requests["jwks"] >= 1
        await agent.wait_healthy()  # READY=1 came when /readyz says ready
        first = notify_socket.messages.index(ready)
        assert await notify_socket.wait_for("WATCHDOG", timeout=2) == {"WATCHDOG": "1"}
        assert notify_socket.messages.index(ready) == first
        agent.signal(signal.SIGTERM)
        stopping = await notify_socket.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1"
        assert await agent.wait_exit() == 0
        names = agent.event_names()
        assert names.index("agent_ready") < names.index("agent_stopping") < \
            names.index("agent_stopped")
    finally:
        agent.kill()


async def test_sigterm_finishes_the_sign_in_in_flight_and_the_session_survives(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """SIGTERM while a code redemption waits at the provider: the sign-in completes, the
    agent exits 0, and the session works after a restart on the same state_dir."""
    agent, _ = start_agent(tmp_path, idp)
    client = SignInClient(agent.url, idp)
    try:
        await agent.wait_healthy()
        callback = await client.authorize(READER)
        idp.faults["token"] = Fault(delay=1.5, times=1)  # the redemption takes a while
        before = idp.requests["token"]
        in_flight = asyncio.create_task(client.get(callback))
        for _ in range(200):  # until the redemption is at the provider, waiting there
            if idp.requests["token"] > before:
                break
            await asyncio.sleep(0.02)
        assert idp.requests["token"] > before, "the code redemption never started"
        agent.signal(signal.SIGTERM)
        status, headers, body = await in_flight
        assert status == 302, body
        assert headers["Location"] == "/"
        assert await agent.wait_exit() == 0

        again = AgentProcess(agent.config, agent.port)  # same state_dir
        try:
            await again.wait_healthy()
            status, headers, _ = await client.get("/auth/check")
            assert status == 200
            assert headers["X-Auth-Request-User"] == READER
        finally:
            again.signal(signal.SIGTERM)
            assert await again.wait_exit() == 0
    finally:
        await client.close()
        agent.kill()


async def test_sighup_reloads_a_valid_config_keeps_sessions_and_rejects_a_bad_one(
        tmp_path: Path, idp: DevIdentityProvider, notify_socket: NotifySocket) -> None:
    """SIGHUP applies a valid file keeping sessions, and keeps the running one for an invalid
    file."""
    agent, data = start_agent(tmp_path, idp, notify_socket)
    client = SignInClient(agent.url, idp)
    try:
        await notify_socket.wait_for("READY")
        await client.sign_in(READER)

        data["server"]["sensor_name"] = "Renamed sensor 7"
        write_config(agent.config, data)
        agent.signal(signal.SIGHUP)
        assert "RELOADING" in await notify_socket.wait_for("RELOADING")
        assert (await notify_socket.wait_for("READY"))["READY"] == "1"
        await agent.wait_event("config_reloaded")
        reloaded = [e for e in agent.events() if e["event"] == "config_reloaded"][0]
        assert reloaded["changed"] == ["server"]
        status, _, page = await client.get("/login")
        assert status == 200 and "Renamed sensor 7" in page
        status, headers, _ = await client.get("/auth/check")
        assert status == 200 and headers["X-Auth-Request-User"] == READER

        bad = dict(data, session={"state_dir": str(tmp_path / "state"), "idle_timeout": "soon"})
        write_config(agent.config, bad)
        agent.signal(signal.SIGHUP)
        await agent.wait_event("config_reload_rejected")
        rejected = [e for e in agent.events() if e["event"] == "config_reload_rejected"][0]
        assert any("session.idle_timeout" in p for p in rejected["problems"])
        status, _, page = await client.get("/login")
        assert status == 200 and "Renamed sensor 7" in page
        status, _, _ = await client.get("/auth/check")
        assert status == 200
        assert agent.proc.poll() is None

        agent.signal(signal.SIGTERM)
        assert await agent.wait_exit() == 0
    finally:
        await client.close()
        agent.kill()


async def test_serves_https_directly_with_tls_cert_and_key(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """With tls_cert_file and tls_key_file the agent serves HTTPS itself."""
    ca, cert, key = write_server_cert(tmp_path)
    agent, _ = start_agent(tmp_path, idp, server={"tls_cert_file": str(cert),
                                                  "tls_key_file": str(key)})
    trust = ssl.create_default_context(cafile=str(ca))
    try:
        await agent.wait_healthy(ssl=trust)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{agent.url}/healthz", ssl=trust) as resp:
                assert resp.status == 200
                assert "max-age" in resp.headers["Strict-Transport-Security"]
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{agent.port}/healthz") as resp:
                    await resp.read()
        _, writer = await asyncio.open_connection("127.0.0.1", agent.port, ssl=trust,
                                                  server_hostname="127.0.0.1")
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        writer.close()
        agent.signal(signal.SIGTERM)
        assert await agent.wait_exit() == 0
    finally:
        agent.kill()


async def test_ready_after_the_grace_period_when_entra_is_unreachable(
        tmp_path: Path, idp: DevIdentityProvider, notify_socket: NotifySocket) -> None:
    """systemd must not kill an agent that serves existing sessions while Entra is away."""
    data = agent_config_for(idp, free_port(), tmp_path / "state")
    data["entra"]["authority_host"] = f"https://127.0.0.1:{free_port()}"
    service = Service(settings_from_mapping(data), notifier=Notifier(notify_socket.path),
                      ready_grace=0.3)
    await service.start()
    try:
        ready = await notify_socket.wait_for("READY", timeout=5)
        assert "NOT READY" in ready["STATUS"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{data['server']['listen'].split(':')[1]}"
                                "/healthz") as resp:
                assert resp.status == 200
    finally:
        await service.stop()
    assert (await notify_socket.wait_for("STOPPING", timeout=2))["STOPPING"] == "1"


async def test_ready_when_the_provider_comes_back(
        tmp_path: Path, idp: DevIdentityProvider, notify_socket: NotifySocket) -> None:
    """Provider down at start: READY=1 after the grace saying NOT READY; once discovery
    answers again the directory's readiness event turns the status to ready."""
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    idp.faults["discovery"] = Fault(status=503, body=b"{}")
    service = Service(settings_from_mapping(data), notifier=Notifier(notify_socket.path),
                      ready_grace=0.3)
    await service.start()
    try:
        ready = await notify_socket.wait_for("READY", timeout=5)
        assert "NOT READY" in ready["STATUS"] and "HTTP 503" in ready["STATUS"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
            del idp.faults["discovery"]
            status = await notify_socket.wait_for("STATUS", timeout=10)
            assert status == {"STATUS": f"serving on 127.0.0.1:{port}; identity provider ready"}
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200
    finally:
        await service.stop()


async def test_notifier_is_silent_without_notify_socket_and_reaches_abstract_sockets() -> None:
    """No NOTIFY_SOCKET: nothing sent; WATCHDOG_PID of another process: no watchdog; abstract
    sockets work."""
    assert Notifier.from_environ({}).ready() is False
    assert Notifier.from_environ({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert Notifier.from_environ({"WATCHDOG_USEC": "30000000",
                                  "WATCHDOG_PID": "1"}).watchdog_interval is None
    name = f"sensor-sso-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier(f"@{name}").ready("serving") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=serving"
    assert Notifier("/nonexistent/notify").watchdog() is False


@pytest.mark.parametrize(("content", "expect"), [
    ("24.1.2\n", "note: sensor software 24.1.2 supports SSO sign-in"),
    ("version=24.3.1.118\n", "note: sensor software 24.3.1.118 supports"),
    ("23.1.3", "warning: sensor software 23.1.3 is older than 24.1.2"),
    ("24.1", "warning: sensor software 24.1 is older than 24.1.2"),
    ("unknown", "warning:"),
    (None, "warning: cannot read the sensor software release"),
])
async def test_check_config_warns_about_an_old_sensor_release(
        tmp_path: Path, idp: DevIdentityProvider, capsys: pytest.CaptureFixture[str],
        content: str | None, expect: str) -> None:
    """check-config warns about a sensor release older than the agent supports (or says it is
    fine)."""
    version_file = tmp_path / "sensor-version"
    if content is not None:
        version_file.write_text(content)
    data = agent_config_for(idp, free_port(), tmp_path / "state")
    data["server"]["sensor_version_file"] = str(version_file)
    config = write_config(tmp_path / "agent.toml", data)
    assert main(["check-config", "--config", str(config)]) == 0  # a warning, not a failure
    out = capsys.readouterr()
    assert expect in out.out + out.err
    if expect.startswith("warning"):
        assert expect in out.err


async def test_reload_moves_to_a_new_listen_address_and_refuses_a_busy_one(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """A reload moves to a new listen address, and keeps the old one when the new one is taken."""
    old_port, new_port = free_port(), free_port()
    data = agent_config_for(idp, old_port, tmp_path / "state")
    config = write_config(tmp_path / "agent.toml", data)
    service = Service(settings_from_mapping(data, source=str(config)))
    await service.start()
    try:
        data["server"]["listen"] = f"127.0.0.1:{new_port}"
        write_config(config, data)
        assert await service.reload() is True
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{new_port}/healthz") as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{old_port}/healthz") as resp:
                    await resp.read()

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            data["server"]["listen"] = f"127.0.0.1:{busy.getsockname()[1]}"
            write_config(config, data)
            assert await service.reload() is False  # rejected: still on new_port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{new_port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await service.stop()
