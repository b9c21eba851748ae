"""Web hardening: no open redirect, logout only by POST with CSRF, no session fixation,
security headers on every answer (and HSTS when serving TLS)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp import web

from agent.devidp.certs import make_tls_material
from agent.lifecycle import server_ssl_context
from agent.sessions.store import COOKIE_NAME
from agent.settings import settings_from_mapping
from agent.web.app import create_app
from tests.harness import Stack, StackFactory, agent_config, free_port
from tests.security.conftest import ADMIN, attempt, plant_cookie, session_works

HOSTILE_NEXT = [
    "//evil.example/", "///evil.example", "////evil.example", "/\\evil.example",
    "\\\\evil.example", "/\\/evil.example", "https://evil.example/", "http:evil.example",
    "HTTPS://evil.example", "javascript:alert(1)", "data:text/html,hi", "evil.example",
    "/%2F%2Fevil.example", "/%2f/evil.example", "%2F%2Fevil.example", "/%5Cevil.example",
    "/%5c%5cevil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
    " //evil.example", "/\x00/evil.example", "\u3000//evil.example", "/\uff0f/evil.example",
    "https:/\\evil.example", "//evil.example@sensor/",
]


class TestOpenRedirect:
    @pytest.mark.parametrize("hostile", HOSTILE_NEXT)
    async def test_hostile_next_stays_on_site(self, stack: Stack, hostile: str) -> None:
        """Whatever next says, the user lands on this site (post_login_path when in doubt)."""
        outcome = await attempt(stack, next_path=hostile)
        assert 302 == outcome.status, outcome.text
        location = outcome.headers["Location"]
        resolved = urlsplit(urljoin(stack.url + "/page/", location))
        assert urlsplit(stack.url).netloc == resolved.netloc
        assert location.startswith("/") and not location.startswith("//")
        assert not re.search(r"[\\\x00-\x20\x7f]", location)

    @pytest.mark.parametrize(("given", "canonical"), [
        ("/.//evil.example", "/evil.example"),
        ("/./evil.example", "/evil.example"),
        ("/a/..//evil.example", "/evil.example"),
        ("/%2e//evil.example", "/evil.example"),
        ("/\u2215\u2215evil.example", "/%E2%88%95%E2%88%95evil.example"),
        ("/\uff0f\uff0fevil.example", "/%EF%BC%8F%EF%BC%8Fevil.example"),
        ("/devices//list/./x/../y?q=\u00e9#top", "/devices/list/y?q=%C3%A9#top"),
    ])
    async def test_next_is_stored_and_redirected_as_a_canonical_path(
            self, stack: Stack, given: str, canonical: str) -> None:
        """Dot segments, doubled slashes and Unicode slashes (issue 23, 8): the sign-in
        stores and redirects to one canonical local path, ASCII only, never as given."""
        outcome = await attempt(stack, next_path=given)
        assert 302 == outcome.status, outcome.text
        assert canonical == outcome.headers["Location"]
        assert [canonical] == [e["next"] for e in outcome.events("sso_login_started")] or \
            not outcome.events("sso_login_started")

    async def test_hostile_next_not_echoed_on_the_sign_in_page(self, stack: Stack) -> None:
        """The sign-in page drops a hostile next instead of carrying it to the start link."""
        resp = await stack.browser().get("/login", params={"next": "//evil.example/"})
        assert "evil.example" not in await resp.text()

    @pytest.mark.parametrize("good", ["/devices", "/devices?id=3&tab=alerts", "/a/b%20c",
                                      "/%E2%9C%93"])
    async def test_local_next_is_kept(self, stack: Stack, good: str) -> None:
        """The control case: same-site relative paths survive the sign-in."""
        outcome = await attempt(stack, next_path=good)
        assert good == outcome.headers["Location"]


class TestLogout:
    async def csrf(self, browser: object) -> str:
        resp = await browser.get("/auth/me")  # type: ignore[attr-defined]
        return str((await resp.json())["csrf_token"])

    async def test_get_does_not_sign_out(self, stack: Stack) -> None:
        """GET /auth/logout (a link or image on another site) is 405; the session lives."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        resp = await browser.get("/auth/logout", params={"csrf_token": await self.csrf(browser)})
        assert 405 == resp.status
        assert await session_works(browser)

    async def test_post_without_token(self, stack: Stack) -> None:
        """A cross-site form POST without the token is 403; the session lives."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        resp = await browser.post("/auth/logout", data={})
        assert 403 == resp.status
        assert await session_works(browser)

    async def test_post_with_another_sessions_token(self, stack: Stack) -> None:
        """The CSRF token of another session does not sign this one out."""
        mine, theirs = stack.browser(), stack.browser()
        await mine.sign_in(ADMIN)
        await theirs.sign_in("reader@contoso.example")
        resp = await mine.post("/auth/logout", data={"csrf_token": await self.csrf(theirs)})
        assert 403 == resp.status
        assert await session_works(mine)

    async def test_post_with_form_token_signs_out(self, stack: Stack) -> None:
        """The control case: POST with the form field ends the session server-side."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        cookie = browser.cookie(COOKIE_NAME)
        resp = await browser.post("/auth/logout", data={"csrf_token": await self.csrf(browser)})
        assert 303 == resp.status
        replay = stack.browser()
        plant_cookie(stack, replay, cookie or "")
        assert not await session_works(replay)


class TestFixation:
    async def test_planted_session_id_is_replaced_and_dead(self, stack: Stack) -> None:
        """An attacker's session id planted in the victim's browser dies at the victim's sign-in."""
        attacker = stack.browser()
        await attacker.sign_in("reader@contoso.example")
        planted = attacker.cookie(COOKIE_NAME)
        victim = stack.browser()
        plant_cookie(stack, victim, planted or "")
        resp = await victim.sign_in(ADMIN)
        assert 302 == resp.status
        assert victim.cookie(COOKIE_NAME) not in (None, planted)
        assert not await session_works(attacker)
        me = await (await victim.get("/auth/me")).json()
        assert ADMIN == me["upn"]

    async def test_made_up_session_id_is_not_adopted(self, stack: Stack) -> None:
        """A cookie value the agent never issued is not turned into a session."""
        browser = stack.browser()
        plant_cookie(stack, browser, "x" * 43)
        await browser.sign_in(ADMIN)
        assert "x" * 43 != browser.cookie(COOKIE_NAME)


PAGES = ["/login", "/auth/sso/start", "/auth/sso/callback?state=x&code=y", "/auth/check",
         "/auth/me", "/healthz", "/readyz", "/nope", "/auth/static/sso.css", "/"]


def assert_hardened(resp: aiohttp.ClientResponse, path: str) -> None:
    h = resp.headers
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, path
    assert "default-src 'none'" in csp, path
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
    assert "script-src" not in csp or "'self'" in csp, path
    assert "no-referrer" == h.get("Referrer-Policy"), path
    assert "nosniff" == h.get("X-Content-Type-Options"), path
    assert "DENY" == h.get("X-Frame-Options"), path
    if not path.startswith("/auth/static"):
        assert "no-store" in h.get("Cache-Control", ""), path


class TestHeaders:
    @pytest.mark.parametrize("path", PAGES)
    async def test_every_answer_is_hardened(self, stack: Stack, path: str) -> None:
        """CSP without inline script and frame-ancestors 'none', no-referrer, no-store."""
        resp = await stack.browser().get(path)
        assert resp.status < 500, path
        assert_hardened(resp, path)

    async def test_signed_in_answers_and_logout_are_hardened(self, stack: Stack) -> None:
        """The callback, /auth/check, /auth/me and logout of a live session too."""
        browser = stack.browser()
        callback = await browser.authenticate(await browser.start(), ADMIN)
        answers = [("callback", await browser.get(callback))]
        for path in ("/auth/check", "/auth/me", "/"):
            answers.append((path, await browser.get(path)))
        csrf = (await (await browser.get("/auth/me")).json())["csrf_token"]
        answers.append(("logout", await browser.post("/auth/logout",
                                                     data={"csrf_token": csrf})))
        for name, resp in answers:
            assert resp.status < 400, name
            assert_hardened(resp, name)

    async def test_auth_check_yes_carries_each_header_once(self, stack: Stack) -> None:
        """/auth/check's yes is built once per session with the security headers in it:
        the first answer and the reused one carry each header exactly once."""
        browser = stack.browser()
        await browser.sign_in(ADMIN)
        for _ in range(2):
            resp = await browser.get("/auth/check")
            assert 200 == resp.status
            assert_hardened(resp, "/auth/check")
            for name in ("Content-Security-Policy", "Cache-Control", "X-Content-Type-Options",
                         "X-Frame-Options", "Referrer-Policy", "X-Auth-Request-User",
                         "X-Auth-Request-Role"):
                assert 1 == len(resp.headers.getall(name)), name

    @pytest.mark.parametrize("path", ["/login", "/", "/auth/sso/callback?state=x"])
    async def test_no_inline_script_in_pages(self, stack: Stack, path: str) -> None:
        """The HTML the agent serves carries no inline script or event handler (CSP-clean)."""
        browser = stack.browser()
        if path == "/":
            await browser.sign_in(ADMIN)
        text = await (await browser.get(path)).text()
        assert "<html" in text.lower()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text, re.I)
        assert not re.search(r"\son[a-z]+\s*=", text, re.I)
        assert "javascript:" not in text.lower()

    async def test_no_hsts_over_plain_http(self, stack: Stack) -> None:
        """HSTS is only sent over TLS (over HTTP browsers ignore it; it would mislead)."""
        resp = await stack.browser().get("/login")
        assert "Strict-Transport-Security" not in resp.headers


async def test_hsts_when_serving_tls(tmp_path: Path, new_stack: StackFactory) -> None:
    """With server.tls_cert_file set, every answer carries Strict-Transport-Security."""
    stack = await new_stack(start=False)
    runner = None
    try:
        tls = make_tls_material()
        ca, cert, key = tls.write(tmp_path / "tls")
        port = free_port()
        data = agent_config(stack.idp, port, tmp_path / "tls-state")
        data["server"].update(tls_cert_file=str(cert), tls_key_file=str(key))
        data["entra"]["redirect_uri"] = f"https://127.0.0.1:{port}/auth/sso/callback"
        settings = settings_from_mapping(data)
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port,
                          ssl_context=server_ssl_context(settings)).start()
        client_ctx = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession() as http:
            for path in ("/login", "/healthz", "/nope"):
                async with http.get(f"https://127.0.0.1:{port}{path}", ssl=client_ctx) as resp:
                    hsts = resp.headers.get("Strict-Transport-Security", "")
                    assert re.fullmatch(r"max-age=\d{7,}.*", hsts), path
    finally:
        if runner is not None:
            await runner.cleanup()
