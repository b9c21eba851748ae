"""Refusal and error pages in the browser: status, words, Try again and the audit reference."""

from __future__ import annotations

import pytest
import structlog
from playwright.async_api import Page
from structlog.testing import capture_logs

from agent.devidp import Fault
from tests.browser.conftest import Chromium
from tests.browser.pages import enter_credentials, open_sign_in, submit_to_agent, text
from tests.harness import Stack

pytestmark = pytest.mark.browser

AUDIT_EVENTS = {"sso_login_refused", "idp_error"}


async def reach_callback(page: Page, stack: Stack, username: str = "admin@contoso.example",
                         before_submit: object = None) -> int:
    await open_sign_in(page, stack)
    await page.get_by_role("link", name="SSO Sign-in").click()
    await enter_credentials(page, username)
    if callable(before_submit):
        before_submit()
    return (await submit_to_agent(page, stack, "Sign in")).status


def token_endpoint_down(stack: Stack) -> None:
    stack.idp.faults["token"] = Fault(status=503, body=b"{}")


def user_not_assigned(stack: Stack) -> None:
    stack.idp.authorize_error = ("access_denied", "AADSTS50105: The signed in user is not "
                                 "assigned to a role for the application.")


def sign_in_took_too_long(stack: Stack) -> None:
    stack.clock.advance(stack.settings.session.sign_in_timeout + 1)


CASES = {
    "provider-unreachable": (token_endpoint_down, 502, "Sign-in service unreachable", None),
    "aadsts-50105": (user_not_assigned, 403, "You are not assigned to this application",
                     "AADSTS50105"),
    "request-expired": (sign_in_took_too_long, 400, "The sign-in request expired", None),
}


class TestErrorPages:
    @pytest.mark.parametrize("case", list(CASES))
    async def test_page_says_what_happened_and_matches_the_audit_line(
            self, stack: Stack, chromium: Chromium, case: str) -> None:
        """Status, title, what to do, Try again, and the reference of this request's audit line."""
        arrange, status, title, code = CASES[case]
        page = await chromium.page()
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            got = await reach_callback(page, stack, before_submit=lambda: arrange(stack))
        await chromium.screenshot(page, f"error-{case}")
        assert (status, title) == (got, await text(page, "h1"))
        assert (await text(page, "#what-to-do")).startswith("What to do:")
        shown = [await c.inner_text() for c in await page.locator("#aadsts").all()]
        assert ([code] if code else []) == shown  # the code when Entra sent one, else none
        reference = await text(page, "#reference")
        assert reference in {e.get("request_id") for e in logs if e["event"] in AUDIT_EVENTS}
        assert "/auth/sso/start" == await page.get_by_role(
            "link", name="Try again").get_attribute("href")
        body = await page.content()
        assert "Traceback" not in body and "eyJ" not in body  # no stack trace, no raw token
