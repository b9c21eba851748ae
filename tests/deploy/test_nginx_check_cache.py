"""The optional /auth/check cache (config/nginx/sensor-sso-check-cache*.conf) in real nginx.

nginx logs every auth subrequest here with its cache status (HIT when nginx answered from its
cache, MISS or BYPASS when the agent was asked), so each test sees which answers the agent gave.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from agent.devidp import DevIdentityProvider
from agent.sessions.store import COOKIE_NAME
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from tests.deploy.support import SignInClient, agent_config_for, free_port
from tests.deploy.test_nginx import (
    NGINX,
    SHIPPED,
    SITE,
    install_shipped_snippets,
    plain_get,
    start_console,
    wait_agent_ready,
    wait_listening,
)
from tests.needs import need

# The window is 5 s as shipped; 60 s here so that no test depends on how fast the machine is.
WINDOW_AS_SHIPPED, WINDOW_IN_TESTS = "proxy_cache_valid 200 5s;", "proxy_cache_valid 200 60s;"
CHECK_LOG = "log_format checks '$uri $status $upstream_cache_status';\n" \
            "    log_subrequest on;\n    access_log {tmp}/checks.log checks;\n"


@dataclass
class CachedFront:
    url: str
    console_seen: list[dict[str, str]]
    checks_log: Path

    def checks(self) -> list[tuple[str, str, str]]:
        """(check location, status, cache status) of every auth subrequest so far."""
        lines = self.checks_log.read_text().splitlines() if self.checks_log.exists() else []
        return [(p[0], p[1], p[2] if len(p) > 2 else "-")
                for p in (line.split() for line in lines) if p[0].startswith("/auth/check")]


@pytest.fixture
async def front(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[CachedFront]:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    port, agent_port = free_port(), free_port()
    app = create_app(settings_from_mapping(agent_config_for(
        idp, agent_port, tmp_path / "state", public_url=f"http://127.0.0.1:{port}")))
    agent = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await agent.setup()
    await web.TCPSite(agent, "127.0.0.1", agent_port).start()
    conf_dir = tmp_path / "nginx"
    install_shipped_snippets(conf_dir, agent_port)
    zone = (SHIPPED / "sensor-sso-check-cache-zone.conf").read_text()
    assert "/run/nginx-sensor-sso-check " in zone
    (conf_dir / "conf.d" / "sensor-sso-check-cache-zone.conf").write_text(
        zone.replace("/run/nginx-sensor-sso-check ", f"{conf_dir}/cache "))
    snippet = (SHIPPED / "sensor-sso-check-cache.conf").read_text()
    assert WINDOW_AS_SHIPPED in snippet
    (conf_dir / "snippets" / "sensor-sso-check-cache.conf").write_text(
        snippet.replace(WINDOW_AS_SHIPPED, WINDOW_IN_TESTS))
    site = SITE.format(tmp=conf_dir, port=port, console_port=console_port).replace(
        "    include conf.d/sensor-sso-upstream.conf;\n",
        "    include conf.d/sensor-sso-upstream.conf;\n"
        "    include conf.d/sensor-sso-check-cache-zone.conf;\n"
        + "    " + CHECK_LOG.format(tmp=conf_dir))
    assert "sensor-sso-check-cache-zone.conf" in site
    (conf_dir / "nginx.conf").write_text(site)
    assert NGINX is not None
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e",
        str(conf_dir / "error.log"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port, nginx, conf_dir)
        await wait_agent_ready(f"http://127.0.0.1:{agent_port}")
        yield CachedFront(f"http://127.0.0.1:{port}", seen, conf_dir / "checks.log")
    finally:
        if nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()
        await agent.cleanup()
        await console.cleanup()


def cookie_of(client: SignInClient) -> str:
    return next(c.value for c in client.http.cookie_jar if c.key == COOKIE_NAME)


async def signed_in(front: CachedFront, idp: DevIdentityProvider, user: str) -> SignInClient:
    client = SignInClient(front.url, idp)
    await client.sign_in(user, next_path="/overview")
    return client


async def test_a_yes_is_kept_for_the_same_cookie_and_outlives_sign_out(
        front: CachedFront, idp: DevIdentityProvider) -> None:
    """The second request with the same cookie is answered by nginx; the documented cost:
    a signed-out cookie keeps working until its entry expires (5 s as shipped)."""
    client = await signed_in(front, idp, "reader@contoso.example")
    try:
        for _ in range(2):
            status, _, _ = await client.get("/overview")
            assert status == 200
        assert [("/auth/check", "200", "MISS"), ("/auth/check", "200", "HIT")] == \
            front.checks()
        assert 2 == len(front.console_seen)
        assert {"read_only"} == {s["X-Auth-Request-Role"] for s in front.console_seen}
        cookie = {"Cookie": f"{COOKIE_NAME}={cookie_of(client)}"}
        _, _, me = await client.get("/auth/me")
        csrf = json.loads(me)["csrf_token"]
        async with client.http.post(f"{front.url}/auth/logout", allow_redirects=False,
                                    headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 303
        status, _, _ = await plain_get(f"{front.url}/overview", headers=cookie)
        assert status == 200  # signed out, still let through from the cache
        status, _, _ = await plain_get(f"{front.url}/admin/users", headers=cookie)
        assert status == 302  # another location: the agent is asked, and says 401
    finally:
        await client.close()


async def test_another_cookie_is_never_answered_from_the_cache(
        front: CachedFront, idp: DevIdentityProvider) -> None:
    """Two users one after the other: each check of a new cookie asks the agent, and the
    console learns each user's own identity."""
    reader = await signed_in(front, idp, "reader@contoso.example")
    admin = await signed_in(front, idp, "admin@contoso.example")
    try:
        assert 200 == (await reader.get("/overview"))[0]
        assert 200 == (await admin.get("/overview"))[0]
        assert 200 == (await reader.get("/overview"))[0]
        assert ["MISS", "MISS", "HIT"] == [c[2] for c in front.checks()]
        assert ["reader@contoso.example", "admin@contoso.example", "reader@contoso.example"] \
            == [s["X-Auth-Request-User"] for s in front.console_seen]
        # The cookie is the key exactly as the agent is sent it (only the session cookie).
        other = {"Cookie": f"theme=dark; {COOKIE_NAME}={cookie_of(admin)}"}
        assert 200 == (await plain_get(f"{front.url}/overview", headers=other))[0]
        assert "HIT" == front.checks()[-1][2]
        assert "admin@contoso.example" == front.console_seen[-1]["X-Auth-Request-User"]
    finally:
        await reader.close()
        await admin.close()


async def test_a_401_is_never_cached(front: CachedFront) -> None:
    """An unknown cookie, or none, asks the agent every time."""
    for _ in range(3):
        status, headers, _ = await plain_get(f"{front.url}/overview",
                                             headers={"Cookie": f"{COOKIE_NAME}=unknown"})
        assert status == 302 and "/login?next=" in headers["Location"]
    for _ in range(2):
        status, _, _ = await plain_get(f"{front.url}/overview")  # no cookie at all
        assert status == 302
    assert [("/auth/check", "401", "MISS")] * 3 + [("/auth/check", "401", "BYPASS")] * 2 \
        == front.checks()
    assert [] == front.console_seen


async def test_a_403_is_never_cached_nor_a_yes_reused_for_a_higher_role(
        front: CachedFront, idp: DevIdentityProvider) -> None:
    """A read-only user whose yes for / is cached is still refused /admin/, every time by the
    agent; an admin's cached yes for /admin/ is not the reader's."""
    reader = await signed_in(front, idp, "reader@contoso.example")
    admin = await signed_in(front, idp, "admin@contoso.example")
    try:
        assert 200 == (await reader.get("/overview"))[0]
        assert 200 == (await reader.get("/overview"))[0]
        assert 200 == (await admin.get("/admin/users"))[0]
        assert 200 == (await admin.get("/admin/users"))[0]
        for _ in range(2):
            assert 403 == (await reader.get("/admin/users"))[0]
        assert [("/auth/check", "200", "MISS"), ("/auth/check", "200", "HIT"),
                ("/auth/check-admin", "200", "MISS"), ("/auth/check-admin", "200", "HIT"),
                ("/auth/check-admin", "403", "MISS"), ("/auth/check-admin", "403", "MISS")] \
            == front.checks()
        assert ["admin@contoso.example"] * 2 == [
            s["X-Auth-Request-User"] for s in front.console_seen if s["path"] == "/admin/users"]
    finally:
        await reader.close()
        await admin.close()
