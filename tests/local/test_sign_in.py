"""Local sign-in through real HTTP: when the form shows, the session it makes, its refusals."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.local.accounts import read_accounts, write_accounts
from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.fleet.helpers import block, fleet
from tests.harness import Stack, query
from tests.local.helpers import (
    LOCAL_ADMIN,
    LOCAL_PASSWORD,
    accounts_file,
    csrf_token,
    has_form,
    local_sign_in,
    local_stack,
    provider_back,
    provider_down,
    sign_in_page,
)


@pytest.fixture
async def down(tmp_path: Path) -> AsyncIterator[Stack]:
    """An accounts file with one admin; the provider down since before the agent started."""
    stack = await local_stack(tmp_path)
    try:
        yield stack
    finally:
        await stack.close()


async def wait_for(predicate: object, timeout: float = 15.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


class TestWhenTheFormShows:
    async def test_provider_down_shows_the_form_below_the_sso_button_with_a_notice(
            self, down: Stack) -> None:
        """Entra ID unreachable: the SSO button, a notice saying why, then the form."""
        page = await sign_in_page(down.browser())
        assert (True, True, True) == (has_form(page), "cannot reach Entra ID" in page,
                                      page.index("SSO Sign-in") < page.index("local-username"))

    async def test_provider_up_hides_the_form_with_the_default_policy(
            self, tmp_path: Path) -> None:
        """Entra ID reachable and the policy "when-sso-unavailable": SSO only."""
        stack = await local_stack(tmp_path, down=False)
        try:
            page = await sign_in_page(stack.browser())
            assert (False, True) == (has_form(page), "SSO Sign-in" in page)
        finally:
            await stack.close()

    async def test_always_shows_both_while_the_provider_is_up(self, tmp_path: Path) -> None:
        """``sign_in = "always"`` shows the form beside SSO, like the sensor's own page."""
        stack = await local_stack(tmp_path, down=False, policy="always")
        try:
            page = await sign_in_page(stack.browser())
            assert (True, True, False) == (has_form(page), "SSO Sign-in" in page,
                                           "cannot reach" in page)
            assert 303 == (await local_sign_in(stack.browser())).status
        finally:
            await stack.close()

    async def test_never_hides_the_form_and_refuses_a_post_while_the_provider_is_down(
            self, tmp_path: Path) -> None:
        """``sign_in = "never"``: no form, and a posted sign-in is refused (403)."""
        stack = await local_stack(tmp_path, policy="never")
        try:
            browser = stack.browser()
            assert False is has_form(await sign_in_page(browser))
            assert 403 == (await local_sign_in(browser, token="0" * 64)).status
        finally:
            await stack.close()

    async def test_no_accounts_no_form(self, tmp_path: Path) -> None:
        """With an empty accounts file the form never shows, even with the provider down."""
        stack = await local_stack(tmp_path, accounts=())
        try:
            assert False is has_form(await sign_in_page(stack.browser()))
        finally:
            await stack.close()

    async def test_sso_off_shows_the_form_alone_with_the_notice(self, tmp_path: Path) -> None:
        """No SSO setting applies to this sensor: the notice and the form, no SSO button."""
        stack = await local_stack(tmp_path, down=False, edit=fleet(
            {"name": "sensor-09", "site": "hamburg", "zone": "packaging"},
            block("US", sites=["houston"])))
        try:
            page = await sign_in_page(stack.browser())
            assert (True, True, False) == (has_form(page), "Single sign-on is off" in page,
                                           'id="sso-sign-in"' in page)
            assert 303 == (await local_sign_in(stack.browser())).status
        finally:
            await stack.close()

    async def test_a_failing_provider_noticed_by_the_probe_shows_the_form_until_it_is_back(
            self, tmp_path: Path) -> None:
        """Ready agent; the provider goes down: the probe notices, the form shows; when the
        provider answers again the form goes (the default policy)."""
        stack = await local_stack(tmp_path, down=False, probe_interval=0.1)
        try:
            browser = stack.browser()
            assert False is has_form(await sign_in_page(browser))
            provider_down(stack)
            health = stack.app[keys.HEALTH] if stack.app else None
            assert health is not None
            await wait_for(lambda: bool(health.degraded()))
            page = await sign_in_page(browser)
            assert (True, True) == (has_form(page), "did not answer the sensor" in page)
            provider_back(stack)
            await wait_for(lambda: not health.degraded())
            assert False is has_form(await sign_in_page(browser))
        finally:
            await stack.close()

    @pytest.mark.parametrize("answer", [
        Fault(status=400, body=b"<html><h1>Bad Request - Request Too Long</h1></html>",
              content_type="text/html"),
        Fault(status=200, body=b"\x00\xffnot json", content_type="text/plain"),
        Fault(status=500, body=b'{"error":"server_error"}'),
    ], ids=["html_400", "garbage_200", "json_500"])
    async def test_a_hostile_callback_does_not_make_the_form_appear(
            self, tmp_path: Path, answer: Fault) -> None:
        """Anyone can start a sign-in and send its callback an odd, oversized code; what the
        token endpoint answers to it (not JSON, an error) is refused for that sign-in only:
        Entra ID is not unavailable, so the form stays hidden and /readyz is not degraded."""
        stack = await local_stack(tmp_path, down=False)
        try:
            attacker, operator = stack.browser(), stack.browser()
            state = query(await attacker.start())["state"]
            stack.idp.faults["token"] = dataclasses.replace(answer, times=1)
            resp = await attacker.get("/auth/sso/callback",
                                      params={"state": state, "code": "0." + "A" * 4000})
            assert resp.status in (400, 403, 502)
            assert 1 == stack.idp.requests["token"]
            assert False is has_form(await sign_in_page(operator))
            ready = await operator.get("/readyz")
            assert {"status": "ready"} == await ready.json()
        finally:
            await stack.close()


class TestTheLocalSession:
    async def test_provider_down_then_back_the_local_session_lives_on(
            self, down: Stack) -> None:
        """Form → local admin signs in → /auth/check says method local → provider back →
        form gone, session still good."""
        browser = down.browser()
        resp = await local_sign_in(browser, next="/admin")
        assert (303, "/admin") == (resp.status, resp.headers["Location"])
        check = await browser.get("/auth/check?role=admin")
        assert (200, LOCAL_ADMIN, "admin", "Break Glass", "local") == (
            check.status, check.headers["X-Auth-Request-User"],
            check.headers["X-Auth-Request-Role"], check.headers["X-Auth-Request-Name"],
            check.headers["X-Auth-Request-Method"])
        provider_back(down)
        await down.wait_ready()
        assert False is has_form(await sign_in_page(browser))
        assert 200 == (await browser.get("/auth/check")).status
        # The sign-in page prepared MSAL in the background for the next SSO sign-in (waited
        # for here, so the stack does not stop the provider under its discovery fetch).
        assert down.app is not None
        client = down.app[keys.SIGN_IN].idp.client
        for _ in range(200):
            if client.loaded:
                break
            await asyncio.sleep(0.05)
        assert client.loaded

    async def test_the_local_session_ends_with_its_idle_timeout(self, down: Stack) -> None:
        """Same timeouts as an SSO session: idle past idle_timeout → 401."""
        browser = down.browser()
        assert 303 == (await local_sign_in(browser)).status
        down.clock.advance(down.settings.session.idle_timeout + 1)
        assert 401 == (await browser.get("/auth/check")).status

    async def test_sign_out_ends_the_local_session(self, down: Stack) -> None:
        """The Overview's sign-out (the session's CSRF token) ends it like an SSO session."""
        browser = down.browser()
        await local_sign_in(browser)
        me = await (await browser.get("/auth/me")).json()
        assert "local" == me["method"]
        resp = await browser.post("/auth/logout", data={"csrf_token": me["csrf_token"]})
        assert (303, 401) == (resp.status, (await browser.get("/auth/check")).status)

    async def test_an_sso_session_says_method_sso(self, tmp_path: Path) -> None:
        """An Entra ID sign-in's /auth/check carries X-Auth-Request-Method: sso."""
        stack = await local_stack(tmp_path, down=False)
        try:
            browser = stack.browser()
            assert 302 == (await browser.sign_in("admin@contoso.example")).status
            check = await browser.get("/auth/check")
            assert ("admin@contoso.example", "sso") == (check.headers["X-Auth-Request-User"],
                                                        check.headers["X-Auth-Request-Method"])
        finally:
            await stack.close()

    async def test_a_new_session_id_and_the_old_session_ends(self, down: Stack) -> None:
        """Signing in again replaces the browser's session (no fixation)."""
        browser = down.browser()
        await local_sign_in(browser)
        first = browser.cookie(COOKIE_NAME)
        await local_sign_in(browser)
        assert first != browser.cookie(COOKIE_NAME)
        assert down.app is not None and 1 == len(down.app[keys.SESSIONS])

    async def test_restart_after_removal_ends_the_session(self, down: Stack,
                                                           tmp_path: Path) -> None:
        """A new application (what SIGHUP builds) ends a removed account's session and a
        changed role's, and keeps the others."""
        path = tmp_path / "local-accounts"
        accounts_file(path, (LOCAL_ADMIN, "admin", LOCAL_PASSWORD),
                      ("second", "read_only", LOCAL_PASSWORD))
        await down.stop_agent()
        await down.start_agent(wait_ready=False)
        admin, second = down.browser(), down.browser()
        await local_sign_in(admin)
        await local_sign_in(second, "second")
        accounts = read_accounts(path)
        del accounts[LOCAL_ADMIN]
        write_accounts(path, accounts)
        await down.stop_agent()
        with capture_logs() as logs:
            await down.start_agent(wait_ready=False)
        assert (401, 200) == ((await admin.get("/auth/check")).status,
                              (await second.get("/auth/check")).status)
        assert [("breakglass", "local_account_removed")] == [
            (e["upn"], e["reason"]) for e in logs if e["event"] == "session_revoked"]
        write_accounts(path, {"second": accounts["second"].changed_to(role="security_analyst")})
        await down.stop_agent()
        await down.start_agent(wait_ready=False)
        assert 401 == (await second.get("/auth/check")).status


    async def test_a_reload_with_changed_roles_keeps_the_local_session(
            self, down: Stack) -> None:
        """[roles] re-decides SSO sessions from their groups; a local session has none and
        keeps the role its account gives."""
        browser = down.browser()
        await local_sign_in(browser)
        await down.stop_agent()
        await down.start_agent(dataclasses.replace(down.settings, roles={
            "admin": ("eeeeeeee-0000-4000-8000-00000000000e",), "security_analyst": (),
            "read_only": ()}), wait_ready=False)
        check = await browser.get("/auth/check?role=admin")
        assert (200, "local") == (check.status, check.headers["X-Auth-Request-Method"])


class TestRefusals:
    async def test_unknown_user_and_wrong_password_answer_alike(self, down: Stack) -> None:
        """Same status, same page text (bar the echoed name), same headers; the audit log
        tells them apart without logging the unknown name."""
        with capture_logs() as logs:
            wrong = await local_sign_in(down.browser(), LOCAL_ADMIN, "not-the-password")
            unknown = await local_sign_in(down.browser(), "nobody", "not-the-password")
        texts = [(await r.text()).replace(LOCAL_ADMIN, "NAME").replace("nobody", "NAME")
                 for r in (wrong, unknown)]
        tokens = [csrf_token(t) for t in texts]
        texts = [t.replace(tok or "", "TOKEN") for t, tok in zip(texts, tokens, strict=True)]
        assert (401, 401) == (wrong.status, unknown.status)
        assert texts[0] == texts[1]
        assert "The user name or password is not right." in texts[0]
        assert sorted(wrong.headers) == sorted(unknown.headers)
        refused = [e for e in logs if e["event"] == "local_login_refused"]
        assert [("bad_credentials", "wrong_password", LOCAL_ADMIN),
                ("bad_credentials", "unknown_account", None)] == [
            (e["reason"], e["why"], e.get("name")) for e in refused]
        assert "not-the-password" not in repr(logs)

    async def test_login_csrf_is_refused(self, down: Stack) -> None:
        """No token, a forged token, or another browser's token: 403, no session."""
        browser, other = down.browser(), down.browser()
        others_token = csrf_token(await sign_in_page(other))
        await sign_in_page(browser)  # browser has its own pre-session cookie
        with capture_logs() as logs:
            statuses = [(await local_sign_in(browser, token=t)).status
                        for t in ("", "f" * 64, others_token or "")]
            without_cookie = await down.browser().post("/auth/local/sign-in", data={
                "username": LOCAL_ADMIN, "password": LOCAL_PASSWORD,
                "csrf_token": others_token})
        assert [403, 403, 403, 403] == [*statuses, without_cookie.status]
        assert 401 == (await browser.get("/auth/check")).status
        assert {"csrf_invalid"} == {e["reason"] for e in logs
                                    if e["event"] == "local_login_refused"}

    async def test_brute_force_against_one_account_is_throttled_even_for_the_right_password(
            self, down: Stack) -> None:
        """After 5 failures the account is locked for growing delays; the right password
        from a client that failed waits too (every browser here is one address); after the
        delay it works."""
        statuses = [(await local_sign_in(down.browser(), password=f"guess-{i}")).status
                    for i in range(6)]
        locked = await local_sign_in(down.browser())
        assert ([401] * 6, 429, "1") == (statuses, locked.status, locked.headers["Retry-After"])
        assert "Too many failed sign-ins. Wait 1 second, then" in await locked.text()
        down.clock.advance(1)
        assert 401 == (await local_sign_in(down.browser(), password="guess-7")).status
        locked = await local_sign_in(down.browser())
        assert (429, "2") == (locked.status, locked.headers["Retry-After"])  # twice as long
        down.clock.advance(2)
        assert 303 == (await local_sign_in(down.browser())).status

    async def test_brute_force_from_one_client_is_throttled_across_names(
            self, down: Stack) -> None:
        """One client trying many names: after 20 failures it waits, whatever the name."""
        browser = down.browser()
        token = csrf_token(await sign_in_page(browser))
        statuses = [(await local_sign_in(browser, f"user{i}", "x" * 12, token=token)).status
                    for i in range(21)]
        assert [401] * 21 == statuses
        blocked = await local_sign_in(browser, LOCAL_ADMIN, token=token)
        assert (429, "1") == (blocked.status, blocked.headers["Retry-After"])
        down.clock.advance(1)
        assert 303 == (await local_sign_in(browser, token=token)).status

    async def test_the_password_never_reaches_the_log_or_the_page(self, down: Stack) -> None:
        """Neither a wrong nor the right password appears in any log line or answer."""
        browser = down.browser()
        with capture_logs() as logs:
            wrong = await local_sign_in(browser, password="Wrong-Secret-123")
            unknown = await local_sign_in(browser, "Wrong-Secret-456", "Wrong-Secret-789")
            right = await local_sign_in(browser)
        pages = await wrong.text() + await unknown.text() + await right.text()
        for secret in ("Wrong-Secret-123", "Wrong-Secret-789", LOCAL_PASSWORD):
            assert secret not in repr(logs) and secret not in pages
        assert "wrong-secret-456" not in repr(logs).lower()
