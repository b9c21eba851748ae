"""docs/install.md "Rehearse the install", followed in the installed agent's shape: the agent
as its own process behind real nginx with the shipped snippets, the identity provider from
``sensor-sso-agent devidp``, a sign-in to the console, and a provider restart that keeps the
CA and the refresh tokens."""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.support import REPO, AgentProcess, free_port
from tests.deploy.test_check_nginx import CORRECT, lay_out
from tests.deploy.test_nginx import NGINX, start_console, wait_listening
from tests.devidp_driver import complete_sign_in
from tests.needs import need

CONFIG = """[server]
listen = "127.0.0.1:{agent_port}"
admin_socket = "{tmp}/admin.sock"

[entra]
tenant_id = "5b1f7c0e-2d4a-4e8b-9f3c-1a2b3c4d5e6f"
client_id = "8e2d6a1c-7b3f-4c5d-a9e8-0f1e2d3c4b5a"
redirect_uri = "http://127.0.0.1:{nginx_port}/auth/sso/callback"
timeout = "3s"

[roles]
admin = ["0a4c8e2f-6b1d-4f3a-8c5e-7d9b1a3c5e7f"]
security_analyst = ["1b5d9f3a-7c2e-4a4b-9d6f-8e0c2b4d6f8a"]
read_only = ["2c6e0a4b-8d3f-4b5c-ae7a-9f1d3c5e7a9b"]

[session]
state_dir = "{tmp}/agent-state"
"""
LINE = re.compile(r'^\s+(authority_host|graph_url|ca_bundle) = "([^"]+)"$')


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")


class Provider:
    """``sensor-sso-agent devidp`` as a process; ``banner`` is what it printed at start."""

    def __init__(self, config: Path, port: int, state_dir: Path) -> None:
        self.argv = [sys.executable, "-m", "agent", "devidp", "--config", str(config),
                     "--listen", f"127.0.0.1:{port}", "--state-dir", str(state_dir)]
        self.proc: subprocess.Popen[str] | None = None
        self.banner: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.PIPE,  # noqa: S603 - our own interpreter
                                     stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.banner = []
        deadline = time.monotonic() + 60
        while not self.banner or not self.banner[-1].lstrip().startswith("Ctrl-C"):
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError("devidp did not start:\n" + "".join(self.banner) + line)
            self.banner.append(line.rstrip("\n"))

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def lines(self) -> dict[str, str]:
        """The three agent.toml lines it printed."""
        return {m.group(1): m.group(2) for m in map(LINE.match, self.banner) if m}

    def password(self) -> str:
        found = next(m for m in (re.search(r"\(password (\S+)\)", line)
                                 for line in self.banner) if m)
        return found.group(1)


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[tuple[Provider, Path, int, int]]:
    agent_port, nginx_port = free_port(), free_port()
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(agent_port=agent_port, nginx_port=nginx_port, tmp=tmp_path))
    p = Provider(config, free_port(), tmp_path / "devidp")
    await asyncio.to_thread(p.start)
    try:
        yield p, config, agent_port, nginx_port
    finally:
        await asyncio.to_thread(p.stop)


def docs_lines() -> set[str]:
    """The keys of the toml block in docs/install.md's rehearsal section."""
    text = (REPO / "docs" / "install.md").read_text()
    section = text[text.index("### Rehearse the install"):]
    block = section[section.index("```toml\n") + 8:]
    return {line.split(" = ")[0] for line in block[:block.index("```")].splitlines()}


def add_to_entra(config: Path, lines: dict[str, str]) -> None:
    text = config.read_text()
    added = "".join(f'{key} = "{value}"\n' for key, value in lines.items())
    config.write_text(text.replace("[entra]\n", "[entra]\n" + added, 1))


def agent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, text=True,  # noqa: S603 - our own interpreter
                          capture_output=True, timeout=60, check=False)


async def test_the_rehearsal_signs_in_to_the_console_and_survives_a_provider_restart(
        tmp_path: Path, provider: tuple[Provider, Path, int, int]) -> None:
    """The docs' three lines point the installed agent at ``devidp``; an admin signs in
    through nginx to the console; after the provider restarts (CA kept) the session still
    re-validates with its refresh token."""
    idp, config, agent_port, nginx_port = provider
    lines = idp.lines()
    assert docs_lines() == set(lines) == {"authority_host", "graph_url", "ca_bundle"}
    ca_pem = Path(lines["ca_bundle"]).read_bytes()
    add_to_entra(config, lines)
    checked = agent_cli("check-config", "--config", str(config))
    assert 0 == checked.returncode, checked.stdout + checked.stderr

    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    agent = AgentProcess(config, agent_port)
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    conf = lay_out(conf_dir, CORRECT, nginx_port, agent_port, console_port)
    assert NGINX is not None
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "error.log"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{nginx_port}"
    trust = ssl.create_default_context(cafile=lines["ca_bundle"])
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
    http = aiohttp.ClientSession(cookie_jar=jar)
    try:
        await wait_listening(nginx_port, nginx, conf_dir)
        await agent.wait_healthy()
        async with http.get(f"{base}/overview", allow_redirects=False) as resp:
            assert 302 == resp.status
            assert resp.headers["Location"].endswith("/login?next=/overview")
        async with http.get(f"{base}/auth/sso/start", params={"next": "/overview"},
                            allow_redirects=False) as resp:
            assert 302 == resp.status
            authorize = resp.headers["Location"]
        assert authorize.startswith(lines["authority_host"] + "/")
        callback = await complete_sign_in(http, authorize, "admin@contoso.example",
                                          idp.password(), trust)
        async with http.get(callback, allow_redirects=False) as resp:
            assert 302 == resp.status, await resp.text()
            assert "/overview" == resp.headers["Location"]
        async with http.get(f"{base}/overview", allow_redirects=False) as resp:
            assert 200 == resp.status
            assert "console page /overview" == await resp.text()
        assert "admin@contoso.example" == seen[-1]["X-Auth-Request-User"]
        assert "admin" == seen[-1]["X-Auth-Request-Role"]

        assert 0 == await asyncio.to_thread(idp.stop)
        await asyncio.to_thread(idp.start)
        assert any("CA kept" in line for line in idp.banner), idp.banner
        assert ca_pem == Path(lines["ca_bundle"]).read_bytes()
        again = await asyncio.to_thread(agent_cli, "sessions", "revalidate", "--config",
                                        str(config))
        assert "admin@contoso.example: confirmed" in again.stdout, again.stdout + again.stderr
        async with http.get(f"{base}/overview", allow_redirects=False) as resp:
            assert 200 == resp.status
    finally:
        await http.close()
        if nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()
        agent.signal(signal.SIGTERM)
        await agent.wait_exit()
        await console.cleanup()


def test_a_busy_port_and_an_unsafe_state_directory_are_named(tmp_path: Path) -> None:
    """``devidp`` on a port in use names it and ``--listen``; a state directory others can
    write is refused with the chmod that fixes it."""
    import socket

    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(agent_port=free_port(), nginx_port=free_port(),
                                    tmp=tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = agent_cli("devidp", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                           "--state-dir", str(tmp_path / "idp"))
    assert 1 == result.returncode
    assert f"devidp: 127.0.0.1:{port} is in use: choose another with --listen HOST:PORT" \
           in result.stderr
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    result = agent_cli("devidp", "--config", str(config), "--state-dir", str(shared))
    assert 1 == result.returncode
    assert f"chmod 0755 {shared}" in result.stderr
