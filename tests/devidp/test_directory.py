"""The provider's directory page: the offboarding an Entra administrator does, for the demo."""

from __future__ import annotations

import re
from typing import Any

from structlog.testing import capture_logs

from tests.harness import Stack, StackFactory, short_intervals
from tests.signin.test_revalidation import (
    events,
    eventually,
    one_interval_later,
)

ANALYST = "analyst@contoso.example"


async def form_token(stack: Stack) -> tuple[str, str]:
    browser = stack.browser()
    page = await browser.get(f"{stack.idp.url}/directory")
    text = await page.text()
    assert 200 == page.status and ANALYST in text
    match = re.search(r'name="token" value="([^"]+)"', text)
    assert match
    return match.group(1), text


async def post(stack: Stack, **form: str) -> int:
    resp = await stack.browser().http.post(f"{stack.idp.url}/directory", data=form,
                                           allow_redirects=False,
                                           ssl=stack.browser().ssl)
    return resp.status



def disabled(user: Any) -> bool:
    """Read afresh (mypy would keep what an earlier assert narrowed it to)."""
    return bool(user.disabled)

class TestDirectoryPage:
    async def test_each_change_applies_to_the_directory(self, new_stack: StackFactory) -> None:
        """Block, move to a labelled group, revoke: the provider's users change; 303 back."""
        labels = {"aaaaaaaa-0000-4000-8000-000000000001": "admin group"}
        stack = await new_stack(idp_options={"group_labels": labels})
        token, page = await form_token(stack)
        assert "admin group" in page
        user = stack.idp.user_by_username(ANALYST)
        assert user is not None
        assert 303 == await post(stack, token=token, username=ANALYST, action="disable")
        assert user.disabled
        assert 303 == await post(stack, token=token, username=ANALYST, action="enable")
        assert not disabled(user)
        assert 303 == await post(stack, token=token, username=ANALYST, action="move",
                                 group="aaaaaaaa-0000-4000-8000-000000000001")
        assert "aaaaaaaa-0000-4000-8000-000000000001" in user.groups
        assert 303 == await post(stack, token=token, username=ANALYST, action="revoke")
        assert user.oid in stack.idp.sessions_revoked_at

    async def test_sign_out_everywhere_reaches_the_sensor_at_re_validation(
            self, new_stack: StackFactory) -> None:
        """The page's "Sign out everywhere" revokes refresh tokens and calls no front-channel
        URL (as Entra): the session lives on until the next re-validation ends it (50173)."""
        stack = await new_stack(config=short_intervals)
        browser = stack.browser()
        assert 302 == (await browser.sign_in(ANALYST)).status
        token, _ = await form_token(stack)
        assert 303 == await post(stack, token=token, username=ANALYST,
                                 action="sign_out_everywhere")
        assert 200 == (await browser.get("/auth/check")).status
        with capture_logs() as logs:
            await one_interval_later(stack)

            async def out() -> bool:
                return (await browser.get("/auth/check")).status == 401

            await eventually(out, "the session ends at its next re-validation")
        assert ["50173"] == [e["aadsts"] for e in events(logs, "session_revoked")]

    async def test_forms_without_the_page_token_are_refused(self, stack: Stack) -> None:
        """A cross-site form post (no token) changes nothing."""
        assert 403 == await post(stack, token="forged", username=ANALYST, action="disable")
        user = stack.idp.user_by_username(ANALYST)
        assert user is not None and not user.disabled
