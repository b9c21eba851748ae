"""Real nginx with the shipped snippets, on what an operator meets after the first sign-in:
deep links that keep their query, the agent's page for a role that is too low (and its
audit line), and a clear 503 while the agent is down."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from aiohttp import web

from agent.devidp import DevIdentityProvider
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from tests.clock import Clock
from tests.deploy.support import REPO, SignInClient, agent_config_for, free_port
from tests.deploy.test_nginx import (
    NGINX,
    nginx_in_front,
    plain_get,
    start_console,
    wait_agent_ready,
)
from tests.devidp_driver import complete_sign_in
from tests.harness import PASSWORD
from tests.needs import need


@pytest.fixture(autouse=True)
def _nginx_installed() -> None:
    need(NGINX, "nginx is not installed (Debian package nginx-light; .ci/run installs it)")


@dataclass
class Site:
    url: str
    console_seen: list[dict[str, str]]
    clock: Clock
    stop_agent: Callable[[], Any]
    agent_url: str


@asynccontextmanager
async def site(tmp_path: Path, idp: DevIdentityProvider, *, agent: bool = True,
               console: bool = True) -> AsyncIterator[Site]:
    """nginx (shipped snippets, verbatim) in front of the console stand-in and the agent;
    ``agent=False``: nothing listens where nginx looks for the agent."""
    assert NGINX is not None
    seen: list[dict[str, str]] = []
    console_runner, console_port = await start_console(seen)
    if not console:
        await console_runner.cleanup()
    port, agent_port = free_port(), free_port()
    clock = Clock()
    runner: web.AppRunner | None = None
    if agent:
        data = agent_config_for(idp, agent_port, tmp_path / "state",
                                public_url=f"http://127.0.0.1:{port}")
        runner = web.AppRunner(create_app(settings_from_mapping(data), clock=clock),
                               access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", agent_port).start()

    async def stop_agent() -> None:
        nonlocal runner
        if runner is not None:
            await runner.cleanup()
            runner = None

    try:
        async with nginx_in_front(tmp_path, port, agent_port, console_port):
            if agent:
                await wait_agent_ready(f"http://127.0.0.1:{agent_port}")
            yield Site(f"http://127.0.0.1:{port}", seen, clock, stop_agent,
                       f"http://127.0.0.1:{agent_port}")
    finally:
        await stop_agent()
        if console:
            await console_runner.cleanup()


def sso_link(page: str) -> str:
    match = re.search(r'id="sso-sign-in" href="([^"]+)"', page)
    assert match, page
    return html.unescape(match.group(1))


async def sign_in_from(client: SignInClient, idp: DevIdentityProvider, deep_link: str,
                       username: str) -> tuple[str, str]:
    """Open ``deep_link`` without a session and sign in the way a browser does: nginx's
    redirect, the sign-in page's SSO Sign-in link, the provider, the callback. Returns the
    sign-in page's URL and where the callback sends the browser."""
    status, headers, _ = await client.get(deep_link)
    assert status == 302, (deep_link, status)
    login_url = headers["Location"]
    status, headers, page = await client.get(login_url)
    if status == 302:  # opened under another name: the sign-in page moves first
        login_url = headers["Location"]
        status, _, page = await client.get(login_url)
    assert status == 200, page
    status, headers, body = await client.get(sso_link(page))
    assert status == 302, body
    callback = await complete_sign_in(client.http, headers["Location"], username, PASSWORD,
                                      client.idp_ssl)
    status, headers, body = await client.get(callback)
    assert status == 302, body
    return login_url, headers["Location"]


class TestAnotherHostName:
    async def test_a_sign_in_opened_under_another_name_moves_to_the_redirect_uris_host(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """The console opened as http://localhost:PORT while redirect_uri names 127.0.0.1:
        /login and /auth/sso/start move there first (next kept), so the sign-in ends signed
        in instead of on "started in another browser"."""
        async with site(tmp_path, idp) as s:
            other = s.url.replace("127.0.0.1", "localhost")
            client = SignInClient(s.url, idp)
            try:
                status, headers, _ = await client.get(f"{other}/auth/sso/start?next=/a%26b")
                assert status == 302
                assert headers["Location"] == f"{s.url}/auth/sso/start?next=/a%26b"
                assert "Set-Cookie" not in headers  # no sign-in bound to the other name

                status, headers, _ = await client.get(f"{other}/overview?tab=2")
                assert status == 302 and headers["Location"].startswith(other + "/login?")
                status, headers, _ = await client.get(headers["Location"])
                assert status == 302
                assert headers["Location"].startswith(f"{s.url}/login?next=/overview")
                login_url, landed = await sign_in_from(client, idp, f"{other}/overview?tab=2",
                                                       "reader@contoso.example")
                assert login_url.startswith(s.url + "/login?")
                assert landed == "/overview?tab=2"
                status, _, body = await client.get(s.url + landed)
                assert status == 200 and s.console_seen[-1]["path"] == "/overview?tab=2"
            finally:
                await client.close()

    async def test_the_configured_name_is_served_without_a_detour(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """Under redirect_uri's own host the pages answer at once (no redirect loop), also
        when the browser's Host carries a port or other letter case."""
        async with site(tmp_path, idp) as s:
            for headers in ({}, {"Host": "127.0.0.1"}):
                status, _, page = await plain_get(f"{s.url}/login?next=/", headers=headers)
                assert status == 200 and "SSO Sign-in" in page
                status, location, _ = await plain_get(f"{s.url}/auth/sso/start", headers=headers)
                assert status == 302 and location["Location"].startswith(idp.url)

    async def test_the_scheme_counts_only_from_a_trusted_proxy(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """X-Forwarded-Proto https from the trusted proxy (loopback) while redirect_uri is
        http: to the http address. A proxy that sends no scheme is never redirected."""
        async with site(tmp_path, idp) as s:
            host = {"Host": s.url.removeprefix("http://")}
            status, headers, _ = await plain_get(f"{s.agent_url}/login?next=/x", headers={
                **host, "X-Forwarded-Proto": "https"})
            assert status == 302 and headers["Location"] == f"{s.url}/login?next=/x"
            status, _, _ = await plain_get(f"{s.agent_url}/login?next=/x", headers=host)
            assert status == 200


class TestDeepLinks:
    @pytest.mark.parametrize("deep_link", [
        "/admin/report?from=2026-01-01&to=2026-02-01",
        "/search?q=a+b",
        "/files/a%2Fb?x=%26y",
        "/alerts?id=7#not-sent",
    ])
    async def test_after_sign_in_the_browser_lands_on_the_very_page(
            self, tmp_path: Path, idp: DevIdentityProvider, deep_link: str) -> None:
        """The query, '+' and encoded characters survive the trip through sign-in."""
        async with site(tmp_path, idp) as s:
            client = SignInClient(s.url, idp)
            try:
                _, landed = await sign_in_from(client, idp, deep_link, "admin@contoso.example")
                expected = deep_link.split("#", 1)[0]
                assert landed == expected
                status, _, body = await client.get(landed)
                assert status == 200 and body.startswith("console page ")
                assert s.console_seen[-1]["path"] == expected
            finally:
                await client.close()

    async def test_a_console_url_cannot_set_parameters_of_the_sign_in_page(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """login_hint and signed_out in a console URL stay part of ``next``."""
        async with site(tmp_path, idp) as s:
            client = SignInClient(s.url, idp)
            try:
                deep = "/alerts?x=1&login_hint=attacker@evil.example&signed_out=1"
                status, headers, _ = await client.get(deep)
                assert status == 302
                query = urlsplit(headers["Location"]).query
                assert query.count("=") == 1 and query.startswith("next=")
                status, _, page = await client.get(headers["Location"])
                assert status == 200
                assert "You have signed out" not in page
                assert "login_hint" not in sso_link(page).split("next=", 1)[0]
                assert "attacker" not in sso_link(page).replace(
                    "attacker%40evil.example", "")  # only inside next, encoded
            finally:
                await client.close()


class TestRoleRefusal:
    async def test_a_refused_role_sees_the_agents_page_and_is_audited_once(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """A Read only user on an Admin location: 403 with "This page needs a higher role",
        one console_access_refused per session and path a minute; allowed pages log none."""
        async with site(tmp_path, idp) as s:
            client = SignInClient(s.url, idp)
            try:
                await client.sign_in("reader@contoso.example", next_path="/overview")
                with structlog.testing.capture_logs() as logs:
                    status, _, body = await client.get("/overview")
                    assert status == 200
                    for _ in range(3):
                        status, headers, page = await client.get("/admin/users?page=2")
                        assert status == 403
                        assert "This page needs a higher role" in page
                        assert "Read only" in page and "Admin" in page
                        assert headers["Content-Type"].startswith("text/html")
                    await client.get("/admin/audit")
                    s.clock.advance(61)
                    await client.get("/admin/users")
                refused = [e for e in logs if e["event"] == "console_access_refused"]
                assert [(e["path"], e.get("suppressed")) for e in refused] == [
                    ("/admin/users", None), ("/admin/audit", None), ("/admin/users", 2)]
                first = refused[0]
                assert first["upn"] == "reader@contoso.example"
                assert first["role"] == "read_only" and first["needed"] == "admin"
                assert first["oid"] and first["source_ip"] == "127.0.0.1"
                assert all(e["event"] != "console_access_refused" or e["path"] != "/overview"
                           for e in logs)
                assert all(seen["path"].split("?")[0] not in ("/admin/users", "/admin/audit")
                           for seen in s.console_seen)
            finally:
                await client.close()


UNAVAILABLE = "Sign-in service unavailable"


class TestAgentDown:
    async def test_console_and_sign_in_pages_say_sign_in_is_unavailable(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """Nothing listens where nginx looks for the agent: 503 with a page that says so,
        on console pages (auth_request) and on the agent's own pages alike."""
        async with site(tmp_path, idp, agent=False) as s:
            for path in ("/", "/admin/users", "/login?next=/", "/auth/sso/start"):
                status, headers, page = await plain_get(s.url + path)
                assert status == 503, (path, status, page)
                assert UNAVAILABLE in page
                assert headers["Content-Type"].startswith("text/html")
                assert headers.get("Retry-After") == "60"
            assert s.console_seen == []

    async def test_the_unavailable_page_wears_the_agents_look(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """nginx's 503 page is the agent's card (its markup and its stylesheet's rules, in
        the page itself: the agent that serves sso.css is the one that is down), and it
        stays free of scripts and framing."""
        css = (REPO / "agent" / "web" / "static" / "sso.css").read_text()
        async with site(tmp_path, idp, agent=False) as s:
            status, headers, page = await plain_get(s.url + "/overview")
        assert 503 == status
        assert '<main class="card problem"' in page and 'class="sensor-label"' in page
        style = re.search(r"<style>(.*)</style>", page, re.S)
        assert style is not None, page
        rules = [r.split("{")[0].strip() for r in style.group(1).split("}") if "{" in r]
        assert {".card", ".sensor-label", "body", "h1"} <= set(rules)
        for rule in rules:  # the same rules as the agent's pages
            assert rule + " {" in css, rule
        assert "<script" not in page
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        csp = headers.get("Content-Security-Policy", "")
        assert f"style-src 'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp

    async def test_sessions_see_the_page_when_the_agent_stops(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """A signed-in user whose agent stops gets the 503 page, not a bare 500."""
        async with site(tmp_path, idp) as s:
            client = SignInClient(s.url, idp)
            try:
                await client.sign_in("admin@contoso.example", next_path="/overview")
                assert (await client.get("/overview"))[0] == 200
                await s.stop_agent()
                status, _, page = await client.get("/overview")
                assert status == 503 and UNAVAILABLE in page
            finally:
                await client.close()

    async def test_a_console_that_is_down_is_not_blamed_on_sign_in(
            self, tmp_path: Path, idp: DevIdentityProvider) -> None:
        """The agent answers, the console does not: nginx's 502, not the sign-in page."""
        async with site(tmp_path, idp, console=False) as s:
            client = SignInClient(s.url, idp)
            try:
                await client.sign_in("admin@contoso.example", next_path="/overview")
                status, _, page = await client.get("/overview")
                assert status == 502 and UNAVAILABLE not in page
            finally:
                await client.close()
