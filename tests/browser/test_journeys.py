"""A person's whole sign-in in Debian's Chromium: the pages they see and where they land."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import aiohttp
import pytest
import structlog
from structlog.testing import capture_logs

from tests.browser.conftest import Chromium
from tests.browser.pages import (
    COOKIE,
    agents_answer,
    enter_credentials,
    open_sign_in,
    sign_in,
    submit_to_agent,
    text,
)
from tests.harness import Stack

pytestmark = pytest.mark.browser

CONTEXT_LOGS = [structlog.contextvars.merge_contextvars]


def request_ids(logs: list[MutableMapping[str, Any]], event: str) -> list[str]:
    return [e.get("request_id", "-") for e in logs if e["event"] == event]


class TestAdminSignsIn:
    async def test_lands_on_overview_with_role_admin_without_javascript(
            self, stack: Stack, chromium: Chromium) -> None:
        """With JavaScript off: sign-in page → provider → Overview naming the admin's role."""
        page = await chromium.page(java_script_enabled=False)
        await open_sign_in(page, stack)
        assert "Sensor 01 · Plant A" in await text(page, ".sensor")
        assert "Ask " in await text(page, "#access-help")
        await chromium.screenshot(page, "01-sign-in")
        await page.get_by_role("link", name="SSO Sign-in").click()
        await page.get_by_label("Password").wait_for()
        await chromium.screenshot(page, "02-provider-sign-in")
        await enter_credentials(page, "admin@contoso.example")
        response = await submit_to_agent(page, stack, "Sign in")
        assert 302 == response.status
        assert stack.url + "/" == page.url
        await chromium.screenshot(page, "03-overview-admin")
        assert ("Overview", "Adele Vance", "admin@contoso.example", "Admin") == (
            await text(page, "h1"), await text(page, "#user-name"),
            await text(page, "#user-upn"), await text(page, "#user-role"))

    async def test_the_session_cookie_chromium_keeps_is_host_prefixed_and_secure(
            self, stack: Stack, chromium: Chromium) -> None:
        """Chromium accepts the agent's __Host- Secure cookie over http://127.0.0.1 (loopback)."""
        page = await chromium.page()
        await sign_in(page, stack, "admin@contoso.example")
        cookies = {c["name"]: c for c in await page.context.cookies(stack.url)}
        assert (True, True, "Lax", "/") == (cookies[COOKIE]["secure"],
                                             cookies[COOKIE]["httpOnly"],
                                             cookies[COOKIE]["sameSite"], cookies[COOKIE]["path"])


class TestMfaUser:
    async def test_approves_with_the_number_and_lands(self, stack: Stack,
                                                      chromium: Chromium) -> None:
        """The MFA user types the number the approval page shows and lands on Overview."""
        page = await chromium.page()
        await open_sign_in(page, stack)
        await page.get_by_role("link", name="SSO Sign-in").click()
        await enter_credentials(page, "mfa@contoso.example")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Approve sign-in request").wait_for()
        number = await text(page, "#mfa-number")
        await chromium.screenshot(page, "04-provider-approve-sign-in")
        await page.get_by_label("Number entered in the Authenticator app").fill(number)
        response = await submit_to_agent(page, stack, "Approve")
        assert 302 == response.status
        assert ("Overview", "Security analyst") == (await text(page, "h1"),
                                                    await text(page, "#user-role"))


class TestReadOnlyUser:
    async def test_is_refused_on_the_admin_page_with_the_audit_reference(
            self, stack: Stack, chromium: Chromium) -> None:
        """A Read only user opening /admin gets a 403 page whose reference is the audit line's."""
        page = await chromium.page()
        await sign_in(page, stack, "reader@contoso.example")
        assert "Read only" == await text(page, "#user-role")
        with capture_logs(processors=CONTEXT_LOGS) as logs:
            response = await page.goto(stack.url + "/admin")
        await chromium.screenshot(page, "05-admin-page-refused")
        assert response is not None and 403 == response.status
        assert "This page needs a higher role" == await text(page, "h1")
        assert "Read only" in await text(page, "#what-happened")
        assert request_ids(logs, "console_access_refused") == [await text(page, "#reference")]
        assert stack.url + "/" == await page.get_by_role(
            "link", name="Back to Overview").evaluate("a => a.href")

    async def test_admin_opens_the_admin_page(self, stack: Stack, chromium: Chromium) -> None:
        """The same page opens for an admin: the refusal is about the role, not the page."""
        page = await chromium.page()
        await sign_in(page, stack, "admin@contoso.example")
        await page.get_by_role("link", name="Administration").click()
        assert "Administration" == await text(page, "h1")


class TestUserWithoutLastName:
    async def test_sees_the_page_naming_it_with_the_audit_reference(
            self, stack: Stack, chromium: Chromium) -> None:
        """Refused with 403; the page names Last name, says what to do, offers Try again."""
        page = await chromium.page()
        with capture_logs(processors=CONTEXT_LOGS) as logs:
            response = await sign_in(page, stack, "nolastname@contoso.example")
        await chromium.screenshot(page, "06-refused-missing-last-name")
        assert 403 == response.status
        assert "Your account is incomplete" == await text(page, "h1")
        what = await text(page, "#what-happened")
        assert "lacks: Last name." in what and "First name" not in what.split("lacks:")[1]
        assert (await text(page, "#what-to-do")).startswith("What to do:")
        assert request_ids(logs, "sso_login_refused") == [await text(page, "#reference")]
        # Try again starts a new sign-in; the provider's SSO session answers at once, the
        # directory still lacks the name, so the same refusal comes back with a new reference.
        first = await text(page, "#reference")
        callback = stack.url + stack.settings.entra.redirect_path
        async with page.expect_response(lambda r: agents_answer(r, callback)) as info:
            await page.get_by_role("link", name="Try again").click()
        assert 403 == (await info.value).status
        await page.wait_for_load_state()
        assert first != await text(page, "#reference")


class TestSignOut:
    async def test_returns_to_sign_in_and_the_old_cookie_is_dead(
            self, stack: Stack, chromium: Chromium) -> None:
        """Sign out → the sign-in page; the old cookie put back opens nothing anymore."""
        page = await chromium.page()
        await sign_in(page, stack, "analyst@contoso.example")
        old = {c["name"]: c for c in await page.context.cookies(stack.url)}[COOKIE]
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_role("status").wait_for()
        await chromium.screenshot(page, "07-signed-out")
        assert stack.url + "/login?signed_out=1" == page.url
        assert "You have signed out." == await text(page, "[role=status]")
        assert COOKIE not in {c["name"] for c in await page.context.cookies(stack.url)}

        # a cookie read back is a valid cookie to set: playwright types the two apart
        await page.context.add_cookies([old])  # type: ignore[list-item]
        await page.goto(stack.url + "/")
        assert stack.url + "/login?next=%2F" == page.url
        async with aiohttp.ClientSession() as http:
            async with http.get(stack.url + "/auth/check",
                                headers={"Cookie": f"{COOKIE}={old['value']}"}) as resp:
                assert 401 == resp.status
