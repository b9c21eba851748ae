"""``sensor-sso-agent sessions ...`` against a running service over its admin socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.devidp import DevIdentityProvider
from agent.devidp.refresh import disable_user
from agent.lifecycle import Service
from agent.settings import settings_from_mapping
from tests.deploy.support import (
    REPO,
    AgentProcess,
    SignInClient,
    agent_config_for,
    free_port,
    write_config,
)

ADMIN, READER = "admin@contoso.example", "reader@contoso.example"
NOBODY = 65534


@dataclass
class Running:
    service: Service
    config: Path
    socket: Path
    url: str


@pytest.fixture
async def running(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[Running]:
    """The agent as ``serve`` runs it (in this process), its admin socket in a short path."""
    socket_dir = Path(tempfile.mkdtemp(prefix="adm", dir="/tmp"))  # sun_path <= 107 bytes
    port = free_port()
    data = agent_config_for(idp, port, tmp_path / "state")
    data["server"]["admin_socket"] = str(socket_dir / "admin.sock")
    config = write_config(tmp_path / "agent.toml", data)
    service = Service(settings_from_mapping(data, source=str(config)))
    await service.start()
    url = f"http://127.0.0.1:{port}"
    probe = SignInClient(url, idp)
    deadline = time.monotonic() + 15
    while (await probe.get("/readyz"))[0] != 200:
        assert time.monotonic() < deadline, "agent not ready"
        await asyncio.sleep(0.05)
    await probe.close()
    try:
        yield Running(service, config, socket_dir / "admin.sock", url)
    finally:
        await service.stop()
        for leftover in socket_dir.iterdir():
            leftover.unlink()
        socket_dir.rmdir()


async def cli(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m agent sessions ...`` as root, in a thread (the agent serves in this loop)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agent", "sessions", *args,
                         "--config", str(running.config)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


async def signed_in(running: Running, idp: DevIdentityProvider, username: str) -> SignInClient:
    client = SignInClient(running.url, idp)
    await client.sign_in(username)
    return client


def as_nobody(path: Path) -> str:
    """Fork; the child drops to nobody, asks the socket for the session list and reports."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        os.close(read_end)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(b"GET /sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = sock.recv(200).split(b"\r\n", 1)[0].decode()
        except PermissionError:
            answer = "EACCES"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer = type(exc).__name__
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 200):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()


class TestSessionsCommand:
    async def test_list_revalidate_and_revoke(self, running: Running,
                                              idp: DevIdentityProvider) -> None:
        """list shows who, role, method and times; revalidate asks Entra now (a disabled user
        is out); revoke --upn ends one user's, revoke --all everyone's; each is audited."""
        admin = await signed_in(running, idp, ADMIN)
        reader = await signed_in(running, idp, READER)
        analyst = await signed_in(running, idp, "analyst@contoso.example")
        with capture_logs() as logs:
            listing = await cli(running, "list")
            assert 0 == listing.returncode, listing.stderr
            answered, *lines = listing.stdout.splitlines()
            assert (f"answered by: agent pid {os.getpid()}, config {running.config}, "
                    f"listening on {running.url.removeprefix('http://')}") == answered
            assert ["UPN", "ROLE", "METHOD", "CREATED", "LAST", "SEEN", "LAST",
                    "RE-VALIDATED"] == lines[0].split()
            assert any(line.split()[:3] == [ADMIN, "admin", "sso"] for line in lines)
            assert any(line.split()[:3] == [READER, "read_only", "sso"] for line in lines)
            assert "3 sessions" == lines[-1]

            disable_user(idp, READER)
            again = await cli(running, "revalidate", "--upn", READER)
            assert 0 == again.returncode, again.stderr
            assert f"{READER}: revoked (invalid_grant)" in again.stdout
            assert 401 == (await reader.get("/auth/check"))[0]

            one = await cli(running, "revoke", "--upn", ADMIN)
            assert (0, "revoked 1 session") == (one.returncode,
                                                one.stdout.strip().splitlines()[-1])
            assert 401 == (await admin.get("/auth/check"))[0]
            assert 200 == (await analyst.get("/auth/check"))[0]

            everyone = await cli(running, "revoke", "--all")
            assert "revoked 1 session" == everyone.stdout.strip().splitlines()[-1]
            assert 401 == (await analyst.get("/auth/check"))[0]
        admin_events = [e for e in logs if e["event"] == "sessions_admin"]
        assert ["list", "revalidate", "revoke", "revoke"] == [e["action"] for e in admin_events]
        assert {0} == {e["caller_uid"] for e in admin_events}
        revoked = [(e["upn"], e["reason"]) for e in logs if e["event"] == "session_revoked"]
        assert (READER, "invalid_grant") in revoked and (ADMIN, "admin_revoke") in revoked
        for client in (admin, reader, analyst):
            await client.close()

    async def test_socket_is_private(self, running: Running) -> None:
        """The socket is mode 0600, owned by the agent's user."""
        info = os.stat(running.socket)
        assert stat.S_ISSOCK(info.st_mode)
        assert (0o600, os.geteuid()) == (stat.S_IMODE(info.st_mode), info.st_uid)

    async def test_other_users_are_refused(self, running: Running) -> None:
        """A process running as nobody cannot connect (0600); with the file opened up, the
        SO_PEERCRED check still answers 403, audited with the caller's uid."""
        os.chmod(running.socket.parent, 0o711)  # noqa: S103 - nobody may reach the socket
        assert "EACCES" == await asyncio.to_thread(as_nobody, running.socket)
        os.chmod(running.socket, 0o666)  # noqa: S103 - opened up on purpose: SO_PEERCRED
        with capture_logs() as logs:
            answer = await asyncio.to_thread(as_nobody, running.socket)
        assert answer.startswith("HTTP/1.1 403")
        refused = [e for e in logs if e["event"] == "sessions_admin"]
        assert [(NOBODY, True)] == [(e["caller_uid"], e["refused"]) for e in refused]

    async def test_without_a_running_agent_the_command_says_so(self, tmp_path: Path,
                                                               idp: DevIdentityProvider) -> None:
        """No socket: exit 1 and a hint to check the service."""
        data = agent_config_for(idp, free_port(), tmp_path / "state")
        empty = Path(tempfile.mkdtemp(prefix="adm", dir="/tmp"))
        data["server"]["admin_socket"] = str(empty / "admin.sock")
        config = write_config(tmp_path / "agent.toml", data)
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent", "sessions", "list",
                             "--config", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        empty.rmdir()
        assert 1 == result.returncode
        assert "is sensor-sso-agent running" in result.stderr


async def over_socket(path: Path, request: bytes) -> bytes:
    """Send raw bytes to the admin socket as root; the whole answer."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


class TestTheSocketsHttp:
    """The admin socket's HTTP is handled like the public port's (issue 23, 7)."""

    async def test_deeply_nested_json_is_a_clean_400(self, running: Running) -> None:
        """A body nested 8,000 deep (within the 16 KiB limit): 400 with a JSON error, no
        RecursionError, no traceback or internal_error logged."""
        body = b"[" * 8_000 + b"]" * 8_000
        with capture_logs() as logs:
            answer = await over_socket(running.socket, (
                b"POST /sessions/revoke HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body))
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"JSON object" in text, text[:300]
        assert not [e for e in logs if e.get("log_level") in ("error", "critical")], logs
        assert "RecursionError" not in repr(logs)

    @pytest.mark.parametrize("body", [b"{", b"[1, 2]", b"\xff\xfe", b'"upn"'])
    async def test_a_body_that_is_no_json_object_is_a_400(self, running: Running,
                                                           body: bytes) -> None:
        """Malformed JSON, an array, bytes that are no UTF-8, a bare string: 400, named."""
        answer = await over_socket(running.socket, (
            b"POST /sessions/revalidate HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"JSON object" in answer

    async def test_a_malformed_request_gets_the_generic_400(self, running: Running) -> None:
        """A header line without a colon carrying a secret-looking value: the generic 400
        of the public port, echoing none of the request's bytes, one rate-limited line."""
        with capture_logs() as logs:
            answer = await over_socket(running.socket, (
                b"GET /sessions HTTP/1.1\r\nHost: admin\r\nNoColonHereSecretValue42\r\n\r\n"))
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), answer[:300]
        assert b"Bad request\n" == text
        assert b"SecretValue42" not in answer
        assert ["http_request_malformed"] == [e["event"] for e in logs
                                              if e["event"].startswith("http_")]

def sessions_list(config: Path) -> subprocess.CompletedProcess[str]:
    """``python -m agent sessions list`` with the configuration file ``config``."""
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "agent", "sessions", "list", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


class TestOneOwner:
    async def test_a_second_agent_leaves_the_first_ones_socket_alone(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """Two agent processes with the same admin_socket: the second warns
        admin_socket_in_use (path and key) and serves HTTP without it; the first keeps
        answering the sessions command with its real sessions, also after the second stops."""
        socket_dir = Path(tempfile.mkdtemp(prefix="adm", dir="/tmp"))
        path = socket_dir / "admin.sock"
        agents: list[AgentProcess] = []
        configs: list[Path] = []
        for name in ("first", "second"):
            port = free_port()
            data = agent_config_for(idp, port, tmp_path / name / "state")
            data["server"]["admin_socket"] = str(path)
            (tmp_path / name).mkdir(exist_ok=True)
            configs.append(write_config(tmp_path / name / "agent.toml", data))
            agents.append(AgentProcess(configs[-1], port))
            await agents[-1].wait_healthy()
        first, second = agents
        client = SignInClient(first.url, idp)
        try:
            await client.sign_in(READER)
            await second.wait_event("admin_socket_in_use")
            warning = next(e for e in second.events() if e["event"] == "admin_socket_in_use")
            assert (str(path), "[server] admin_socket", first.proc.pid) == (
                warning["path"], warning["key"], warning["other_pid"])
            assert "admin_socket_listening" not in second.event_names()
            for _ in range(2):  # with the second running, then after it stopped
                listing = await asyncio.to_thread(sessions_list, configs[1])
                assert 0 == listing.returncode, listing.stderr
                lines = listing.stdout.splitlines()
                assert lines[0].startswith(f"answered by: agent pid {first.proc.pid}, "
                                           f"config {configs[0]}, listening on 127.0.0.1:")
                assert any(line.split()[:2] == [READER, "read_only"] for line in lines)
                assert "1 session" == lines[-1]
                if second.proc.poll() is None:
                    second.signal(signal.SIGTERM)
                    assert 0 == await second.wait_exit()
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            await client.close()
            for agent in agents:
                agent.kill()
            for leftover in socket_dir.iterdir():
                leftover.unlink()
            socket_dir.rmdir()

    async def test_stop_removes_only_its_own_socket(self, running: Running) -> None:
        """When the path no longer holds the socket this agent bound (replaced meanwhile),
        stopping leaves it; a stale socket nobody listens on is taken over at start."""
        running.socket.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(str(running.socket))
            await running.service.stop()
            assert stat.S_ISSOCK(os.lstat(running.socket).st_mode)  # still the other one
        await running.service.start()  # nobody listens on that one: replaced, and served
        listing = await cli(running, "list")
        assert 0 == listing.returncode, listing.stderr
        assert listing.stdout.startswith(f"answered by: agent pid {os.getpid()}")
