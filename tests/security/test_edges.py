"""Every edge bounded: sign-out robustness, outbound size caps, attribute lengths, discovery's
loopback exception."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.devidp import DevIdentityProvider, DevUser, demo_users
from agent.sessions.store import COOKIE_NAME
from tests.harness import PASSWORD, ROLE_GROUPS, Stack, make_stack
from tests.security.conftest import ADMIN, attempt, discovery_answered, fresh_client, session_works

HUGE = 2 * 1024 * 1024  # characters: over the 1 MiB cap on what Entra ID or Graph answer


def user(name: str, given: str, optional_claims: bool = True) -> DevUser:
    return DevUser(username=name, password=PASSWORD, given_name=given, family_name="Bowen",
                   upn=name, groups=list(ROLE_GROUPS["read_only"][:1]),
                   optional_claims=optional_claims)


class TestSignOut:
    async def test_cross_site_post_leaves_the_cookie(self, stack: Stack) -> None:
        """A POST with no cookie (a cross-site form: the Lax cookie is not sent) clears
        nothing: the answer sets no cookie and the user stays signed in."""
        browser = stack.browser()
        assert 302 == (await browser.sign_in(ADMIN)).status
        async with await fresh_client() as other_site:
            async with other_site.post(f"{stack.url}/auth/logout", data={"csrf_token": "x"},
                                       allow_redirects=False) as resp:
                assert 303 == resp.status
                assert "Set-Cookie" not in resp.headers
        assert await session_works(browser)

    async def test_stale_cookie_is_cleared(self, stack: Stack) -> None:
        """A session id the agent no longer knows is cleared (it comes from the site itself)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.post(f"{stack.url}/auth/logout", allow_redirects=False,
                                 headers={"Cookie": f"{COOKIE_NAME}=gone"}) as resp:
                assert 303 == resp.status
                assert COOKIE_NAME in resp.headers.get("Set-Cookie", "")

    @pytest.mark.parametrize(("content_type", "body"), [
        ("application/x-www-form-urlencoded", b"csrf_token=\xff\xfe\xfd"),
        ("application/x-www-form-urlencoded; charset=x-no-such-charset", b"csrf_token=abc"),
        ("multipart/form-data", b"--x\r\nnot really multipart\r\n"),
        ("multipart/form-data; boundary=zz", b"\xff\xfe garbage without parts"),
    ])
    async def test_malformed_body_is_403_not_500(self, stack: Stack, content_type: str,
                                                 body: bytes) -> None:
        """A sign-out body that cannot be read carries no token: 403, the session lives."""
        browser = stack.browser()
        assert 302 == (await browser.sign_in(ADMIN)).status
        resp = await browser.post("/auth/logout", data=body,
                                  headers={"Content-Type": content_type})
        assert 403 == resp.status
        assert await session_works(browser)


class TestSizeCaps:
    @pytest.fixture
    async def big(self, tmp_path: Path) -> AsyncIterator[Stack]:
        users = demo_users(ROLE_GROUPS) + [
            user("huge.token@contoso.example", "A" * HUGE),
            user("huge.graph@contoso.example", "B" * HUGE, optional_claims=False),
            user("long.name@contoso.example", "C" * 10_000),
        ]
        stack = await make_stack(tmp_path, users=users)
        yield stack
        await stack.close()

    @pytest.mark.parametrize("name", ["huge.token@contoso.example",
                                      "huge.graph@contoso.example"])
    async def test_oversized_answer_refused(self, big: Stack, name: str) -> None:
        """A token or Graph answer over 1 MiB ends the sign-in with a 502 page, no session."""
        browser = big.browser()
        resp = await browser.sign_in(name)
        assert 502 == resp.status
        assert not await session_works(browser)

    async def test_long_name_is_cut(self, big: Stack) -> None:
        """A 10,000-character first name is cut to 256 in the session and its headers."""
        browser = big.browser()
        assert 302 == (await browser.sign_in("long.name@contoso.example")).status
        check = await browser.get("/auth/check")
        assert 200 == check.status
        assert "C" * 256 + " Bowen" == check.headers["X-Auth-Request-Name"]


class TestUnusableUpn:
    @pytest.fixture
    async def odd(self, tmp_path: Path) -> AsyncIterator[Stack]:
        users = demo_users(ROLE_GROUPS) + [
            user("crlf\r\nX-Auth-Request-Role: admin@contoso.example", "Crlf"),
            user("tab\there@contoso.example", "Tab"),
            user("del\x7f@contoso.example", "Del", optional_claims=False),
        ]
        stack = await make_stack(tmp_path, users=users)
        yield stack
        await stack.close()

    @pytest.mark.parametrize("name", [
        "crlf\r\nX-Auth-Request-Role: admin@contoso.example", "tab\there@contoso.example",
        "del\x7f@contoso.example"])
    async def test_upn_with_control_characters_is_refused(self, odd: Stack, name: str) -> None:
        """A UPN holding a control character (from the token or from Graph) is an identity
        the console cannot be told safely (Entra never issues one): refused with a 403 page
        and the reason, never a session whose /auth/check answers 500."""
        outcome = await attempt(odd, name)
        assert 403 == outcome.status
        assert "User principal name" in outcome.text
        assert not outcome.has_session
        assert ["upn_unusable"] == outcome.refused_reasons


class _CraftedIdp(DevIdentityProvider):
    crafted = ""

    @property  # a crafted endpoint instead of the tenant's address
    def authorization_endpoint(self) -> str:  # type: ignore[override]
        return self.crafted


@pytest.mark.parametrize("endpoint", [
    "http://evil.example\\@127.0.0.1/authorize",
    "http://evil.example@127.0.0.1/authorize",
    "http://127.0.0.1\\evil.example/authorize",
    "http://127.0.0.1.evil.example/authorize",
    "http://127.0.0.1 /authorize",
])
async def test_plain_http_authorization_endpoint_only_on_loopback(
        tmp_path: Path, endpoint: str) -> None:
    """Discovery's plain-http exception holds only for a loopback host as a browser reads
    it: userinfo, backslashes and look-alike hosts keep the agent not ready."""
    stack = await make_stack(tmp_path, start=False)
    try:
        stack.idp.__class__ = _CraftedIdp
        stack.idp.crafted = endpoint  # type: ignore[attr-defined]
        await stack.start_agent(wait_ready=False)
        await discovery_answered(stack)
        resp = await stack.browser().get("/readyz")
        assert 503 == resp.status
        assert "authorization_endpoint" in (await resp.json())["reason"]
    finally:
        await stack.close()
