"""A refused sign-in ends on a clean address: the authorization response's code never stays
in the browser's history, and the page there is the same one, status and reference alike."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from agent.web.refusal_pages import REFUSED_PATH
from tests.harness import Stack


async def test_the_callback_sends_a_refusal_to_a_clean_address(stack: Stack) -> None:
    """The callback answers 303 to /auth/sso/refused (no code, no state); that page is the
    refusal (403, its words, the reference of the sso_login_refused line) on every reload,
    and only for the browser it was made for."""
    browser = stack.browser()
    callback = await browser.authenticate(await browser.start(), "nogroup@contoso.example")
    assert "code=" in callback
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with browser.http.get(callback, allow_redirects=False, ssl=browser.ssl) as resp:
            status, location = resp.status, resp.headers.get("Location")
    assert (303, REFUSED_PATH) == (status, location)
    refused = [e for e in logs if e["event"] == "sso_login_refused"]
    assert 1 == len(refused)
    for _ in range(2):  # a reload shows it again, without posting anything
        async with browser.http.get(stack.url + REFUSED_PATH, allow_redirects=False) as resp:
            assert 403 == resp.status
            page = await resp.text()
        assert f'<code id="reference">{refused[0]["request_id"]}</code>' in page
        assert "code=" not in page
    other = stack.browser()
    resp = await other.get(REFUSED_PATH)
    assert 400 == resp.status and "Sign-in did not complete" in await resp.text()
