"""Real nginx with the shipped snippets in front of the agent and a stand-in console."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.devidp import DevIdentityProvider
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from tests.deploy.support import REPO, SignInClient, agent_config_for, free_port
from tests.needs import need

SHIPPED = REPO / "config" / "nginx"


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


NGINX = find_nginx()


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")


SITE = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include conf.d/sensor-sso-upstream.conf;
    upstream console {{ server 127.0.0.1:{console_port}; }}
    server {{
        listen 127.0.0.1:{port};
        include snippets/sensor-sso.conf;
        location / {{
            auth_request /auth/check;
            include snippets/sensor-sso-auth.conf;
            proxy_pass http://console;
        }}
        location /admin/ {{
            auth_request /auth/check-admin;
            include snippets/sensor-sso-auth.conf;
            proxy_pass http://console;
        }}
    }}
}}
"""


@dataclass
class Front:
    url: str
    console_seen: list[dict[str, str]]
    agent_port: int


async def start_console(seen: list[dict[str, str]]) -> tuple[web.AppRunner, int]:
    async def echo(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items()
                     if k.lower().startswith("x-auth-request")} | {"path": request.path_qs})
        return web.Response(text=f"console page {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def install_shipped_snippets(conf_dir: Path, agent_port: int) -> None:
    """conf.d/ and snippets/ as docs/install.md has them: the upstream pointed at the test's
    agent, the two snippets verbatim."""
    (conf_dir / "conf.d").mkdir(parents=True)
    (conf_dir / "snippets").mkdir()
    upstream = (SHIPPED / "sensor-sso-upstream.conf").read_text()
    assert "server 127.0.0.1:8080;" in upstream
    (conf_dir / "conf.d" / "sensor-sso-upstream.conf").write_text(
        upstream.replace("127.0.0.1:8080", f"127.0.0.1:{agent_port}"))
    for name in ("sensor-sso.conf", "sensor-sso-auth.conf"):
        shutil.copy(SHIPPED / name, conf_dir / "snippets" / name)  # verbatim


def write_nginx_conf(tmp: Path, port: int, agent_port: int, console_port: int) -> Path:
    install_shipped_snippets(tmp, agent_port)
    conf = tmp / "nginx.conf"
    conf.write_text(SITE.format(tmp=tmp, port=port, console_port=console_port))
    return conf


@pytest.fixture
async def front(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[Front]:
    assert NGINX is not None
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    port, agent_port = free_port(), free_port()
    data = agent_config_for(idp, agent_port, tmp_path / "state",
                            public_url=f"http://127.0.0.1:{port}")
    app = create_app(settings_from_mapping(data))
    agent = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await agent.setup()
    await web.TCPSite(agent, "127.0.0.1", agent_port).start()
    try:
        async with nginx_in_front(tmp_path, port, agent_port, console_port):
            await wait_agent_ready(f"http://127.0.0.1:{agent_port}")
            yield Front(f"http://127.0.0.1:{port}", seen, agent_port)
    finally:
        await agent.cleanup()
        await console.cleanup()


@contextlib.asynccontextmanager
async def nginx_in_front(tmp_path: Path, port: int, agent_port: int,
                         console_port: int) -> AsyncIterator[Path]:
    """Real nginx with the shipped snippets on ``port`` (config and error.log in the
    yielded folder), listening when entered, stopped on exit."""
    assert NGINX is not None
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    conf = write_nginx_conf(conf_dir, port, agent_port, console_port)
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(conf_dir), "-c", str(conf), "-e", str(conf_dir / "error.log"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port, nginx, conf_dir)
        yield conf_dir
    finally:
        if nginx.returncode is None:
            nginx.terminate()
            try:
                await asyncio.wait_for(nginx.wait(), 5)
            except TimeoutError:
                nginx.kill()
                await nginx.wait()


async def wait_listening(port: int, proc: asyncio.subprocess.Process, conf_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.returncode is not None:
            log = (conf_dir / "error.log").read_text() if (conf_dir / "error.log").exists() \
                else ""
            raise AssertionError(f"nginx exited {proc.returncode}:\n{log}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if time.monotonic() > deadline:
            raise AssertionError("nginx did not start listening")
        await asyncio.sleep(0.05)


async def wait_agent_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("agent not ready")


async def plain_get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False, **kwargs) as resp:
            return resp.status, dict(resp.headers), await resp.text()


async def test_unauthenticated_requests_go_to_the_sign_in_page(front: Front) -> None:
    """Without a session nginx sends the browser to /login with next, forged headers or not."""
    status, headers, _ = await plain_get(f"{front.url}/")
    assert status == 302
    assert headers["Location"].endswith("/login?next=/")
    status, headers, _ = await plain_get(f"{front.url}/alerts?id=7",
                                         headers={"X-Auth-Request-User": "admin@contoso.example",
                                                  "X-Auth-Request-Role": "admin"})
    assert status == 302
    assert headers["Location"].endswith("/login?next=/alerts%3Fid%3D7")  # encoded once
    status, _, page = await plain_get(f"{front.url}/login?next=/alerts")
    assert status == 200 and "SSO Sign-in" in page
    assert front.console_seen == []  # nothing reached the console


async def test_the_check_endpoints_are_internal(front: Front) -> None:
    """The /auth/check locations answer 404 to a browser: only auth_request reaches them."""
    for path in ("/auth/check", "/auth/check-admin", "/auth/check-security_analyst"):
        status, _, _ = await plain_get(front.url + path)
        assert status == 404, path


async def test_after_sign_in_the_console_learns_user_and_role(
        front: Front, idp: DevIdentityProvider) -> None:
    """After sign-in the console gets the agent's user and role, never the browser's forged ones."""
    client = SignInClient(front.url, idp)
    try:
        await client.sign_in("reader@contoso.example", next_path="/overview")
        status, _, body = await client.get("/overview", headers={
            "X-Auth-Request-User": "admin@contoso.example", "X-Auth-Request-Role": "admin"})
        assert status == 200 and body == "console page /overview"
        seen = front.console_seen[-1]
        assert seen["X-Auth-Request-User"] == "reader@contoso.example"  # not the forged one
        assert seen["X-Auth-Request-Role"] == "read_only"
        assert seen["X-Auth-Request-Name"] == "Megan Bowen"

        status, _, _ = await client.get("/admin/users")
        assert status == 403  # read-only user, admin-only location
        assert all(s["path"] != "/admin/users" for s in front.console_seen)
    finally:
        await client.close()


async def test_an_admin_reaches_the_admin_location(front: Front,
                                                   idp: DevIdentityProvider) -> None:
    """An admin's session reaches the admin-only location with the admin role."""
    client = SignInClient(front.url, idp)
    try:
        await client.sign_in("admin@contoso.example", next_path="/admin/users")
        status, _, body = await client.get("/admin/users")
        assert status == 200 and body == "console page /admin/users"
        assert front.console_seen[-1]["X-Auth-Request-Role"] == "admin"
    finally:
        await client.close()


async def test_the_role_refused_page_shows_the_audit_lines_reference(
        front: Front, idp: DevIdentityProvider) -> None:
    """The "needs a higher role" page's Reference is the request_id of its
    console_access_refused line, also when a repeat within the minute writes no new line."""
    import structlog

    client = SignInClient(front.url, idp)
    try:
        await client.sign_in("reader@contoso.example", next_path="/overview")
        with structlog.testing.capture_logs() as logs:
            status, _, page = await client.get("/admin/users")
            assert status == 403
            again_status, _, again = await client.get("/admin/users")
        refused = [e for e in logs if e["event"] == "console_access_refused"]
        assert 1 == len(refused), logs
        reference = refused[0]["request_id"]
        assert f'<code id="reference">{reference}</code>' in page
        assert 403 == again_status
        assert f'<code id="reference">{reference}</code>' in again
    finally:
        await client.close()
