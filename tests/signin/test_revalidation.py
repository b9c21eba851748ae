"""Life after sign-in over real HTTP: Entra ID's directory changes reach /auth/check.

The agent and the local provider run with an injected clock; a test moves the clock by one
``revalidate_interval`` and wakes the background re-validation, then watches ``/auth/check``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.devidp.refresh import disable_user, revoke_sessions, set_groups
from agent.sessions.store import Session
from agent.web import keys
from tests.harness import ROLE_GROUPS, Browser, Stack, StackFactory, short_intervals

INTERVAL = 10.0
GRACE = 60.0




async def one_interval_later(stack: Stack, seconds: float = INTERVAL) -> None:
    stack.clock.advance(seconds)
    assert stack.app is not None
    stack.app[keys.REVALIDATOR].wake()


async def eventually(predicate: Any, what: str, timeout: float = 15.0) -> None:
    """Poll an async predicate until it holds (no timing assertion: a generous deadline)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def confirmed_one_interval_later(stack: Stack, session: Session) -> None:
    """An interval passes and Entra ID confirms ``session`` again (its last re-validation
    moves on)."""
    before = session.revalidated
    await one_interval_later(stack)

    async def confirmed() -> bool:
        return session.revalidated > before

    await eventually(confirmed, "the session is re-validated")


async def check_status(browser: Browser) -> int:
    return (await browser.get("/auth/check")).status


async def role(browser: Browser) -> str | None:
    resp = await browser.get("/auth/check")
    return resp.headers.get("X-Auth-Request-Role") if resp.status == 200 else None


async def signed_in(stack: Stack, username: str) -> Browser:
    browser = stack.browser()
    resp = await browser.sign_in(username)
    assert 302 == resp.status, await resp.text()
    assert 200 == await check_status(browser)
    return browser


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


class TestOffboarding:
    async def test_disabled_user_loses_the_console_within_one_interval(
            self, rstack: Stack) -> None:
        """Block sign-in in Entra ID → 401 after one interval, audited with AADSTS50057."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        disable_user(rstack.idp, "analyst@contoso.example")
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the disabled user's session ends")
        revoked = events(logs, "session_revoked")
        assert 1 == len(revoked)
        assert ("invalid_grant", "50057") == (revoked[0]["reason"], revoked[0]["aadsts"])
        assert "disabled" in revoked[0]["detail"]

    async def test_revoked_sessions_end(self, rstack: Stack) -> None:
        """An admin's revokeSignInSessions → 401 after one interval (AADSTS50173)."""
        browser = await signed_in(rstack, "reader@contoso.example")
        revoke_sessions(rstack.idp, "reader@contoso.example")
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the revoked user's session ends")
        assert "50173" == events(logs, "session_revoked")[0]["aadsts"]

    async def test_removed_from_groups_loses_the_console(self, rstack: Stack) -> None:
        """No mapped group any more → the session ends with reason no_role."""
        browser = await signed_in(rstack, "reader@contoso.example")
        set_groups(rstack.idp, "reader@contoso.example", ["dddddddd-0000-4000-8000-00000000000d"])
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the user without a role loses the session")
        assert ["no_role"] == [e["reason"] for e in events(logs, "session_revoked")]

    async def test_overage_user_removed_from_group_consults_graph(self, rstack: Stack) -> None:
        """A user with 200+ groups: the refreshed token has none, Graph says which → 401."""
        browser = await signed_in(rstack, "overage@contoso.example")
        user = rstack.idp.user_by_username("overage@contoso.example")
        assert user is not None
        set_groups(rstack.idp, user.username,
                   [g for g in user.groups if g not in ROLE_GROUPS["read_only"]])
        before = rstack.idp.requests["graph_check_member_groups"]
        await one_interval_later(rstack)

        async def out() -> bool:
            return await check_status(browser) == 401

        await eventually(out, "the overage user's session ends")
        assert rstack.idp.requests["graph_check_member_groups"] > before

    async def test_unchanged_user_keeps_the_session_and_is_confirmed(
            self, rstack: Stack) -> None:
        """Nothing changed: the refresh succeeds, the session lives on, last re-validated moves."""
        browser = await signed_in(rstack, "admin@contoso.example")
        assert rstack.app is not None
        session = rstack.app[keys.SESSIONS].live()[0]
        await confirmed_one_interval_later(rstack, session)
        assert 200 == await check_status(browser)
        assert rstack.idp.last_token_origin == rstack.settings.entra.origin  # SPA: Origin sent


class TestRoleChanges:
    @pytest.mark.parametrize(("username", "new_groups", "before", "after"), [
        ("analyst@contoso.example", ROLE_GROUPS["admin"], "security_analyst", "admin"),
        ("admin@contoso.example", ROLE_GROUPS["read_only"][:1], "admin", "read_only"),
    ])
    async def test_new_role_applies_on_the_next_check(
            self, rstack: Stack, username: str, new_groups: list[str], before: str,
            after: str) -> None:
        """A changed group membership changes X-Auth-Request-Role; audited from → to."""
        browser = await signed_in(rstack, username)
        assert before == await role(browser)
        set_groups(rstack.idp, username, list(new_groups))
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def changed() -> bool:
                return await role(browser) == after

            await eventually(changed, f"the role becomes {after}")
        change = events(logs, "session_role_changed")
        assert [(before, after)] == [(e["from"], e["to"]) for e in change]
        forbidden = await browser.get("/auth/check", params={"role": "admin"})
        assert (200 if after == "admin" else 403) == forbidden.status


class TestEntraUnavailable:
    async def test_kept_through_the_grace_then_401(self, rstack: Stack) -> None:
        """Token endpoint down: 200 until last success + interval + grace, then 401."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        rstack.idp.faults["token"] = Fault(status=503, body=b'{"error":"temporarily_unavailable"}')
        tries = rstack.idp.requests["token"]
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def tried() -> bool:
                return rstack.idp.requests["token"] > tries

            await eventually(tried, "a refresh was attempted")
            assert 200 == await check_status(browser)
            rstack.clock.advance(GRACE - 1)
            assert 200 == await check_status(browser)
            rstack.clock.advance(1)
            assert 401 == await check_status(browser)
        assert events(logs, "revalidation_unavailable")
        assert ["revalidation_unavailable"] == [
            e["reason"] for e in events(logs, "session_revoked")]

    async def test_recovery_in_the_grace_keeps_the_session(self, rstack: Stack) -> None:
        """Entra ID back within the grace: the next attempt confirms the session."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        rstack.idp.faults["token"] = Fault(status=503, body=b'{"error":"temporarily_unavailable"}')
        tries = rstack.idp.requests["token"]
        await one_interval_later(rstack)

        async def tried() -> bool:
            return rstack.idp.requests["token"] > tries

        await eventually(tried, "a refresh was attempted")
        rstack.idp.reset_misbehaviour()
        assert rstack.app is not None
        session = rstack.app[keys.SESSIONS].live()[0]
        await one_interval_later(rstack, GRACE - 5)

        async def confirmed() -> bool:
            return session.failures == 0 and rstack.clock() - session.revalidated < 1

        await eventually(confirmed, "the session is confirmed again")
        rstack.clock.advance(INTERVAL)
        assert 200 == await check_status(browser)


class TestRefreshTokenKept:
    async def test_kept_encrypted_across_a_restart_and_never_shown(self, rstack: Stack) -> None:
        """The refresh token is in no answer and no plaintext file, and still works after a
        restart (the restored session is re-validated: a disabled user is out)."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        token = next(iter(rstack.idp.refresh_tokens))
        me = await browser.get("/auth/me")
        assert token not in await me.text()
        await rstack.stop_agent()
        for path in Path(rstack.settings.session.state_dir).iterdir():
            assert token.encode() not in path.read_bytes()
        await rstack.start_agent()
        assert 200 == await check_status(browser)
        disable_user(rstack.idp, "analyst@contoso.example")
        await one_interval_later(rstack)

        async def out() -> bool:
            return await check_status(browser) == 401

        await eventually(out, "the restored session is re-validated and ends")


class TestPlatformsAndThrottling:
    async def test_web_platform_refreshes_with_its_secret(self, tmp_path: Path,
                                                          new_stack: StackFactory) -> None:
        """A Web platform app refreshes with the client secret and no Origin; a disabled
        user is out after one interval as with an SPA."""
        secret = tmp_path / "client-secret"
        secret.write_text("s3cr3t-value~from-the-portal\n")

        def web_app(data: dict[str, Any]) -> None:
            short_intervals(data)
            data["entra"].update(platform="web", client_secret_file=str(secret))

        stack = await new_stack(idp_options={"spa": False,
                                             "client_secret": "s3cr3t-value~from-the-portal"},
                                config=web_app)
        browser = await signed_in(stack, "analyst@contoso.example")
        disable_user(stack.idp, "analyst@contoso.example")
        await one_interval_later(stack)

        async def out() -> bool:
            return await check_status(browser) == 401

        await eventually(out, "the disabled user's session ends")
        assert stack.idp.requests["token_refresh"] >= 1
        assert stack.idp.last_token_origin is None

    async def test_retry_after_is_honoured(self, rstack: Stack) -> None:
        """A 429 with Retry-After: 120 → no refresh before 120 s have passed, one after."""
        await signed_in(rstack, "analyst@contoso.example")
        await signed_in(rstack, "reader@contoso.example")
        rstack.idp.faults["token"] = Fault(status=429, body=b'{"error":"temporarily_unavailable"}',
                                           headers={"Retry-After": "120"}, times=1)
        tries = rstack.idp.requests["token"]
        await one_interval_later(rstack)

        async def tried() -> bool:  # both sessions' refreshes start together: one gets 429
            return rstack.idp.requests["token"] >= tries + 2

        await eventually(tried, "both refreshes were attempted")
        assert rstack.app is not None
        revalidator = rstack.app[keys.REVALIDATOR]

        async def settled() -> bool:  # the other session's refresh, if it started, is over
            return revalidator.in_flight == 0

        await eventually(settled, "no refresh under way")
        assert revalidator.paused_until >= rstack.clock() + 119
        after_429 = rstack.idp.requests["token"]
        for _ in range(3):  # 60 s later, three looks at the schedule: still waiting
            await one_interval_later(rstack, 20)
            await revalidator.look()  # returns once whatever it started has answered
            assert after_429 == rstack.idp.requests["token"]
        await one_interval_later(rstack, 61)

        async def resumed() -> bool:
            return rstack.idp.requests["token"] > after_429

        await eventually(resumed, "re-validation resumes after Retry-After")


class TestRefreshTokenAtRest:
    async def test_the_rotated_token_is_used_after_a_restart(self, rstack: Stack) -> None:
        """Re-validation reads the session's token from the journal: after one rotation, a
        restart and the old token's end at the provider, the next one still confirms the
        session (the rotated token was journalled and is the one read)."""
        browser = await signed_in(rstack, "admin@contoso.example")
        assert rstack.app is not None
        store = rstack.app[keys.SESSIONS]
        first = next(iter(rstack.idp.refresh_tokens))
        session = store.live()[0]
        created = session.revalidated
        await one_interval_later(rstack)

        async def rotated() -> bool:
            return session.revalidated > created and len(rstack.idp.refresh_tokens) > 1

        await eventually(rotated, "the session is re-validated with a new refresh token")
        await store.flush()
        assert session.new_refresh_token is None  # journalled, not kept in memory
        await rstack.stop_agent()
        del rstack.idp.refresh_tokens[first]  # only the rotated token works now
        await rstack.start_agent()
        assert rstack.app is not None
        restored = rstack.app[keys.SESSIONS].live()[0]
        await confirmed_one_interval_later(rstack, restored)  # with the rotated token
        assert 200 == await check_status(browser)


class TestHostileAnswers:
    async def test_nested_header_does_not_stop_revalidation(self, rstack: Stack) -> None:
        """A refresh answered with an ID token whose JOSE header is 60,000 nested '[' is a
        malformed token for that session only: re-validation goes on, and a user disabled
        afterwards is out within one interval (nothing failed, so no task_failed)."""
        browser = await signed_in(rstack, "analyst@contoso.example")
        issued = len(rstack.idp.refresh_tokens)
        rstack.idp.token_tweaks.raw_header = b"[" * 60_000
        with capture_logs() as logs:
            await one_interval_later(rstack)

            async def answered() -> bool:
                return len(rstack.idp.refresh_tokens) > issued

            await eventually(answered, "the provider answered the refresh")
            rstack.idp.token_tweaks.clear()
            disable_user(rstack.idp, "analyst@contoso.example")
            await one_interval_later(rstack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the disabled user's session ends")
        rejected = events(logs, "session_revalidation_rejected")
        assert ["id_token_malformed"] == [e["reason"] for e in rejected]
        assert [] == events(logs, "task_failed")
        assert 200 == (await browser.get("/readyz")).status
