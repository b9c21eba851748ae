"""Sessions on a running service: a reload that changes [roles] re-decides every role at once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from structlog.testing import capture_logs

from agent.devidp import DevIdentityProvider
from agent.lifecycle import Service
from agent.settings import settings_from_mapping
from tests.deploy.support import (
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
)
from tests.harness import ROLE_GROUPS

ANALYST, READER = "analyst@contoso.example", "reader@contoso.example"


async def ready(client: SignInClient) -> None:
    """Wait for the tenant's discovery document and keys (a generous deadline, no timing)."""
    deadline = time.monotonic() + 15
    while (await client.get("/readyz"))[0] != 200:
        assert time.monotonic() < deadline, "agent not ready"
        await asyncio.sleep(0.05)


async def test_reload_with_changed_roles_redecides_every_session(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """Analyst's group now maps to admin, read-only groups to nothing: on reload the analyst
    is admin on the next check and the reader's session ends (no_role), both audited."""
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    config = write_config(tmp_path / "agent.toml", data)
    service = Service(settings_from_mapping(data, source=str(config)))
    await service.start()
    analyst = SignInClient(f"http://127.0.0.1:{port}", idp)
    reader = SignInClient(f"http://127.0.0.1:{port}", idp)
    try:
        await ready(analyst)
        await analyst.sign_in(ANALYST)
        await reader.sign_in(READER)
        data["roles"] = {"admin": ROLE_GROUPS["admin"] + ROLE_GROUPS["security_analyst"],
                         "security_analyst": [], "read_only": []}
        write_config(config, data)
        with capture_logs() as logs:
            assert await service.reload() is True
        status, headers, _ = await analyst.get("/auth/check")
        assert (200, "admin") == (status, headers["X-Auth-Request-Role"])
        assert 401 == (await reader.get("/auth/check"))[0]
        changed = [e for e in logs if e["event"] == "session_role_changed"]
        assert [("security_analyst", "admin", "config_reload")] == [
            (e["from"], e["to"], e["via"]) for e in changed]
        revoked = [e for e in logs if e["event"] == "session_revoked"]
        assert [(READER, "no_role")] == [(e["upn"], e["reason"]) for e in revoked]
    finally:
        await analyst.close()
        await reader.close()
        await service.stop()


async def test_reload_switching_to_app_roles_redecides_live_sessions(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """[roles] source switched from groups to app_roles on reload: Entra ID decides every
    live session again at once from a refreshed token's roles claim (the analyst holds the
    Sensor.Admin app role: admin; the reader holds none: the session ends, no_app_role); a
    later mapping change under app_roles re-decides from the stored values."""
    idp.app_roles = {"Sensor.Admin": "Sensor Admin", "Sensor.ReadOnly": "Read only"}
    analyst_user = idp.user_by_username(ANALYST)
    assert analyst_user is not None
    analyst_user.app_roles = ["Sensor.Admin"]
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    config = write_config(tmp_path / "agent.toml", data)
    service = Service(settings_from_mapping(data, source=str(config)))
    await service.start()
    analyst = SignInClient(f"http://127.0.0.1:{port}", idp)
    reader = SignInClient(f"http://127.0.0.1:{port}", idp)
    try:
        await ready(analyst)
        await analyst.sign_in(ANALYST)
        await reader.sign_in(READER)
        assert "security_analyst" == (await analyst.get("/auth/check"))[1][
            "X-Auth-Request-Role"]
        refreshes = idp.requests["token_refresh"]
        data["roles"] = {"source": "app_roles", "admin": ["Sensor.Admin"],
                         "read_only": ["Sensor.ReadOnly"]}
        write_config(config, data)
        with capture_logs() as logs:
            assert await service.reload() is True
            deadline = time.monotonic() + 15
            while (await reader.get("/auth/check"))[0] != 401:
                assert time.monotonic() < deadline, "the reader's session never ended"
                await asyncio.sleep(0.05)
        status, headers, _ = await analyst.get("/auth/check")
        assert (200, "admin") == (status, headers["X-Auth-Request-Role"])
        assert 2 == idp.requests["token_refresh"] - refreshes
        assert [("app_roles", 2)] == [(e["source"], e["sessions"]) for e in logs
                                     if e["event"] == "roles_source_changed"]
        revoked = [e for e in logs if e["event"] == "session_revoked"]
        assert [(READER, "no_app_role")] == [(e["upn"], e["reason"]) for e in revoked]
        changed = [e for e in logs if e["event"] == "session_role_changed"]
        assert [("security_analyst", "admin")] == [(e["from"], e["to"]) for e in changed]

        data["roles"] = {"source": "app_roles", "read_only": ["Sensor.Admin"]}
        write_config(config, data)
        refreshes = idp.requests["token_refresh"]
        assert await service.reload() is True
        status, headers, _ = await analyst.get("/auth/check")
        assert (200, "read_only") == (status, headers["X-Auth-Request-Role"])
        assert refreshes == idp.requests["token_refresh"]  # decided from the stored values
    finally:
        await analyst.close()
        await reader.close()
        await service.stop()


async def test_sighup_switching_source_redecides_the_running_service(
        tmp_path: Path, idp: DevIdentityProvider) -> None:
    """The service as systemd runs it: SIGHUP with [roles] source switched to app_roles; the
    analyst (app role Sensor.ReadOnly) is read_only from then on, the reader (none) is out."""
    idp.app_roles = {"Sensor.ReadOnly": "Read only"}
    user = idp.user_by_username(ANALYST)
    assert user is not None
    user.app_roles = ["Sensor.ReadOnly"]
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    config = write_config(tmp_path / "agent.toml", data)
    agent = AgentProcess(config, port)
    analyst = SignInClient(agent.url, idp)
    reader = SignInClient(agent.url, idp)
    try:
        await agent.wait_healthy()
        await analyst.sign_in(ANALYST)
        await reader.sign_in(READER)
        data["roles"] = {"source": "app_roles", "read_only": ["Sensor.ReadOnly"]}
        write_config(config, data)
        agent.signal(signal.SIGHUP)
        await agent.wait_event("roles_source_changed")
        await agent.wait_event("session_revoked")
        assert 401 == (await reader.get("/auth/check"))[0]
        status, headers, _ = await analyst.get("/auth/check")
        assert (200, "read_only") == (status, headers["X-Auth-Request-Role"])
        revoked = [e for e in agent.events() if e["event"] == "session_revoked"]
        assert [(READER, "no_app_role", "revalidation")] == [
            (e["upn"], e["reason"], e["via"]) for e in revoked]
        agent.signal(signal.SIGTERM)
        assert 0 == await agent.wait_exit()
    finally:
        await analyst.close()
        await reader.close()
        agent.kill()
