"""Front-channel sign-out from Entra ID, and the account prompt after a sign-out (shared PCs)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

from agent.devidp.refresh import sign_out_everywhere
from agent.web import keys
from tests.harness import Browser, Stack, StackFactory, query

PATH = "/auth/sso/frontchannel-logout"


async def signed_in(stack: Stack, username: str) -> Browser:
    browser = stack.browser()
    resp = await browser.sign_in(username)
    assert 302 == resp.status, await resp.text()
    return browser


def sid_of(stack: Stack, upn: str) -> str:
    assert stack.app is not None
    sessions = [s for s in stack.app[keys.SESSIONS].live() if s.upn == upn]
    assert 1 == len(sessions) and sessions[0].sid
    return sessions[0].sid


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


class TestFrontChannelLogout:
    async def test_sign_out_at_entra_ends_that_users_session_only(self, stack: Stack) -> None:
        """The provider's sign-out page loads the registered URL with the user's sid: their
        session ends, another user's lives on; audited sso_logout via=frontchannel."""
        admin = await signed_in(stack, "admin@contoso.example")
        reader = await signed_in(stack, "reader@contoso.example")
        with capture_logs() as logs:
            await admin.get(stack.idp.end_session_endpoint)
        assert 401 == (await admin.get("/auth/check")).status
        assert 200 == (await reader.get("/auth/check")).status
        logout = events(logs, "sso_logout")
        assert [("admin@contoso.example", "frontchannel", "127.0.0.1")] == [
            (e["upn"], e["via"], e["source_ip"]) for e in logout]

    async def test_sign_out_everywhere_calls_no_frontchannel_url(self, stack: Stack) -> None:
        """As in Entra, "Sign out everywhere" (revokeSignInSessions) revokes refresh tokens
        but loads no front-channel URL: the session lives until its next re-validation."""
        admin = await signed_in(stack, "admin@contoso.example")
        with capture_logs() as logs:
            sign_out_everywhere(stack.idp, "admin@contoso.example")
            assert 200 == (await admin.get("/auth/check")).status
        assert [] == events(logs, "sso_logout")
        user = stack.idp.user_by_username("admin@contoso.example")
        assert user is not None and user.oid in stack.idp.sessions_revoked_at

    async def test_signing_out_at_the_provider_ends_the_session(self, stack: Stack) -> None:
        """The browser signs out at Entra's end-session page: the agent's session ends too."""
        browser = await signed_in(stack, "analyst@contoso.example")
        await browser.get(stack.idp.end_session_endpoint)
        assert 401 == (await browser.get("/auth/check")).status

    async def test_answer_is_empty_and_framable_only_by_the_authority(self, stack: Stack) -> None:
        """200, empty body, frame-ancestors names the authority host, no X-Frame-Options."""
        browser = await signed_in(stack, "admin@contoso.example")
        resp = await stack.browser().get(PATH, params={"sid": sid_of(stack, "admin@contoso."
                                                                           "example")})
        assert 200 == resp.status and b"" == await resp.read()
        csp = resp.headers["Content-Security-Policy"]
        assert f"frame-ancestors {stack.idp.authority_host}" in csp
        assert "'none'" not in csp.split("frame-ancestors")[1].split(";")[0]
        assert "X-Frame-Options" not in resp.headers
        assert 401 == (await browser.get("/auth/check")).status
        other = await stack.browser().get("/login")
        assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"]
        assert "DENY" == other.headers["X-Frame-Options"]

    async def test_unknown_or_missing_sid_changes_nothing(self, stack: Stack) -> None:
        """No sid, an unknown one, an oversized one: 200, every session lives on, no audit."""
        browser = await signed_in(stack, "admin@contoso.example")
        with capture_logs() as logs:
            for params in ({}, {"sid": "00000000-0000-0000-0000-000000000000"},
                           {"sid": "x" * 5000}, {"sid": ""}):
                assert 200 == (await stack.browser().get(PATH, params=params)).status
        assert 200 == (await browser.get("/auth/check")).status
        assert [] == events(logs, "sso_logout")


class TestPromptAfterSignOut:
    async def test_next_sign_in_after_sign_out_asks_for_the_account(self, stack: Stack) -> None:
        """Operator A signs out; operator B on the same browser is asked which account and
        gets B's session (not A's through Entra's own session); later sign-ins do not ask."""
        browser = await signed_in(stack, "admin@contoso.example")
        assert "prompt" not in query(await browser.start())
        me = await (await browser.get("/auth/me")).json()
        resp = await browser.post("/auth/logout", data={"csrf_token": me["csrf_token"]})
        assert 303 == resp.status
        authorize_url = await browser.start()
        assert "select_account" == query(authorize_url)["prompt"]
        callback = await browser.authenticate(authorize_url, "reader@contoso.example")
        assert 302 == (await browser.get(callback)).status
        check = await browser.get("/auth/check")
        assert "reader@contoso.example" == check.headers["X-Auth-Request-User"]
        assert "prompt" not in query(await browser.start())

    async def test_without_the_prompt_entra_would_reuse_the_previous_user(
            self, stack: Stack) -> None:
        """What the prompt prevents: a start without it is answered by Entra's session."""
        browser = await signed_in(stack, "admin@contoso.example")
        callback = await browser.authenticate(await browser.start(), "reader@contoso.example")
        assert 302 == (await browser.get(callback)).status
        check = await browser.get("/auth/check")
        assert "admin@contoso.example" == check.headers["X-Auth-Request-User"]

    async def test_configured_prompt_applies_to_every_sign_in(
            self, new_stack: StackFactory) -> None:
        """[entra] prompt = "login": every sign-in sends it, after a sign-out too."""
        stack = await new_stack(config=lambda d: d["entra"].update(prompt="login"))
        browser = stack.browser()
        assert "login" == query(await browser.start())["prompt"]
        await browser.sign_in("admin@contoso.example")
        me = await (await browser.get("/auth/me")).json()
        await browser.post("/auth/logout", data={"csrf_token": me["csrf_token"]})
        assert "login" == query(await browser.start())["prompt"]

    async def test_no_login_hint_beside_select_account(self, new_stack: StackFactory) -> None:
        """A configured or passed login_hint goes with an ordinary start, but not with the
        account picker after a sign-out (Entra: login_hint and select_account cannot be used
        together; the hint would name the previous operator's account)."""
        stack = await new_stack(config=lambda d: d["entra"].update(
            login_hint="admin@contoso.example"))
        browser = stack.browser()
        assert "admin@contoso.example" == query(await browser.start())["login_hint"]
        await browser.sign_in("admin@contoso.example")
        me = await (await browser.get("/auth/me")).json()
        await browser.post("/auth/logout", data={"csrf_token": me["csrf_token"]})
        for params in (None, {"login_hint": "analyst@contoso.example"}):
            resp = await browser.get("/auth/sso/start", params=params)
            assert 302 == resp.status
            sent = query(resp.headers["Location"])
            assert "select_account" == sent["prompt"] and "login_hint" not in sent
