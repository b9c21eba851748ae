"""What the sign-in page says to someone whose session was ended by someone else."""

from __future__ import annotations

import html

from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import Stack


async def test_a_revoked_session_is_told_to_sign_in_again(stack: Stack) -> None:
    """After an administrator (or re-validation) ends the session, the next /login says the
    session ended, and nothing about why (no directory facts); a first visit says nothing."""
    browser = stack.browser()
    first = html.unescape(await (await browser.get("/login")).text())
    assert "session ended" not in first
    resp = await browser.sign_in("admin@contoso.example")
    assert 302 == resp.status
    cookie = browser.cookie(COOKIE_NAME)
    assert cookie is not None and stack.app is not None
    await stack.app[keys.SESSIONS].delete(cookie)
    assert 401 == (await browser.get("/auth/check")).status
    page = html.unescape(await (await browser.get("/login?next=/overview")).text())
    assert "Your session ended. Sign in again." in page
    for fact in ("revoked", "disabled", "group", "admin@contoso.example"):
        assert fact not in page.split("Your session ended")[1].split("</p>")[0]
