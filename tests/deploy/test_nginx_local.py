"""Real nginx with the shipped snippets: a local account signs in while Entra ID is down and
the console learns ``X-Auth-Request-Method: local`` (a browser's own header is overwritten)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent.devidp import ENDPOINTS, DevIdentityProvider, Fault
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from tests.deploy.support import agent_config_for, free_port
from tests.deploy.test_nginx import (
    NGINX,
    Front,
    nginx_in_front,
    start_console,
)
from tests.local.helpers import LOCAL_ADMIN, LOCAL_PASSWORD, accounts_file, csrf_token, has_form
from tests.needs import need


@pytest.fixture
async def down_front(tmp_path: Path, idp: DevIdentityProvider) -> AsyncIterator[Front]:
    """nginx → agent (one local admin) → stand-in console; the provider answers 503."""
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")
    assert NGINX is not None
    for name in ENDPOINTS:
        idp.faults[name] = Fault(status=503)
    seen: list[dict[str, str]] = []
    console, console_port = await start_console(seen)
    port, agent_port = free_port(), free_port()
    data = agent_config_for(idp, agent_port, tmp_path / "state",
                            public_url=f"http://127.0.0.1:{port}")
    data["local"] = {"accounts_file": str(accounts_file(
        tmp_path / "local-accounts", (LOCAL_ADMIN, "admin", LOCAL_PASSWORD)))}
    agent = web.AppRunner(create_app(settings_from_mapping(data)), access_log=None,
                          shutdown_timeout=0.5)
    await agent.setup()
    await web.TCPSite(agent, "127.0.0.1", agent_port).start()
    try:
        async with nginx_in_front(tmp_path, port, agent_port, console_port):
            yield Front(f"http://127.0.0.1:{port}", seen, agent_port)
    finally:
        await agent.cleanup()
        await console.cleanup()


async def test_a_local_admin_signs_in_through_nginx_and_the_console_learns_the_method(
        down_front: Front, idp: DevIdentityProvider) -> None:
    """Provider down → the form through nginx → local admin signs in → the console gets
    X-Auth-Request-Method: local (not the browser's "sso") → provider back → no form, the
    local session still reaches the admin location."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[down_front.url])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{down_front.url}/admin/users", allow_redirects=False) as r:
            assert 302 == r.status
            assert r.headers["Location"].endswith("/login?next=/admin/users")
        async with browser.get(f"{down_front.url}/login?next=/admin/users") as r:
            page = await r.text()
        assert has_form(page) and "cannot reach Entra ID" in page
        async with browser.post(f"{down_front.url}/auth/local/sign-in", data={
                "username": LOCAL_ADMIN, "password": LOCAL_PASSWORD,
                "csrf_token": csrf_token(page), "next": "/admin/users"},
                allow_redirects=False) as r:
            assert (303, "/admin/users") == (r.status, r.headers["Location"])
        forged = {"X-Auth-Request-Method": "sso", "X-Auth-Request-User": "ceo@contoso.example"}
        async with browser.get(f"{down_front.url}/admin/users", headers=forged,
                               allow_redirects=False) as r:
            assert (200, "console page /admin/users") == (r.status, await r.text())
        seen = down_front.console_seen[-1]
        assert ("local", LOCAL_ADMIN, "admin", "Break Glass") == (
            seen["X-Auth-Request-Method"], seen["X-Auth-Request-User"],
            seen["X-Auth-Request-Role"], seen["X-Auth-Request-Name"])

        idp.faults.clear()
        await ready(f"http://127.0.0.1:{down_front.agent_port}")
        async with browser.get(f"{down_front.url}/login") as r:
            assert not has_form(await r.text())
        async with browser.get(f"{down_front.url}/admin/users", allow_redirects=False) as r:
            assert 200 == r.status
        assert "local" == down_front.console_seen[-1]["X-Auth-Request-Method"]


async def ready(agent_url: str, timeout: float = 40.0) -> None:
    """The agent retries discovery with a growing pause (at most 60 s; a few s here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            async with http.get(f"{agent_url}/readyz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the agent did not get ready after the provider came back")


async def test_without_a_session_a_forged_method_header_reaches_nothing(
        down_front: Front) -> None:
    """A browser sending X-Auth-Request-Method itself is sent to sign in; nothing reaches
    the console."""
    async with aiohttp.ClientSession() as browser:
        async with browser.get(f"{down_front.url}/", allow_redirects=False, headers={
                "X-Auth-Request-Method": "local", "X-Auth-Request-User": LOCAL_ADMIN}) as r:
            assert 302 == r.status
    assert [] == down_front.console_seen
