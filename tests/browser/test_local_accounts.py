"""A local account in Debian's Chromium while Entra ID is down: the form appears, the admin
signs in by keyboard, the pages pass axe-core; when Entra ID is back the form goes and the
session stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.conftest import Chromium, axe_check, passed, violations
from tests.browser.pages import text
from tests.harness import Stack
from tests.local.helpers import LOCAL_ADMIN, LOCAL_PASSWORD, local_stack, provider_back

pytestmark = pytest.mark.browser


@pytest.fixture
async def down(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await local_stack(tmp_path)
    try:
        yield stack
    finally:
        await stack.close()


async def test_provider_down_form_sign_in_provider_back_form_gone_session_lives(
        down: Stack, chromium: Chromium) -> None:
    """The whole story a break-glass admin lives, with JavaScript off."""
    page = await chromium.page(java_script_enabled=False)
    await page.goto(down.url + "/login?next=/")
    assert "cannot reach Entra ID" in await text(page, "[role=status]")
    await chromium.screenshot(page, "local-01-form")
    await page.get_by_label("User name").fill(LOCAL_ADMIN)
    await page.get_by_label("Password").fill(LOCAL_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.get_by_role("heading", name="Overview").wait_for()
    await chromium.screenshot(page, "local-02-overview")
    assert ("Break Glass", LOCAL_ADMIN, "Admin") == (
        await text(page, "#user-name"), await text(page, "#user-upn"),
        await text(page, "#user-role"))
    assert "a local account" in await text(page, "#signed-in-with")

    provider_back(down)
    await down.wait_ready(timeout=40)
    other = await chromium.page("second-profile")
    await other.goto(down.url + "/login")
    await other.get_by_role("link", name="SSO Sign-in").wait_for()
    assert 0 == await other.get_by_label("User name").count()
    await page.goto(down.url + "/")
    assert "Overview" == await text(page, "h1")


async def test_a_wrong_password_says_so_and_keeps_the_name(down: Stack,
                                                           chromium: Chromium) -> None:
    """The alert names no account and the user name stays filled in."""
    page = await chromium.page()
    await page.goto(down.url + "/login")
    await page.get_by_label("User name").fill(LOCAL_ADMIN)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "The user name or password is not right." == (await alert.inner_text()).strip()
    assert LOCAL_ADMIN == await page.get_by_label("User name").input_value()


async def test_the_form_and_its_error_pass_axe_and_work_by_keyboard(
        down: Stack, chromium: Chromium, axe_source: Path) -> None:
    """axe-core finds nothing on the page with the form and with its error; Tab reaches
    the fields with a visible focus and Enter signs in."""
    page = await chromium.page(bypass_csp=True)
    await page.goto(down.url + "/login")
    for name in ("form", "error"):
        results = await axe_check(page, axe_source)
        assert [] == violations(results), name
        assert {"color-contrast", "label"} <= passed(results), name
        if name == "form":
            await page.get_by_label("User name").fill("nobody")
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await page.get_by_role("alert").wait_for()
    await page.get_by_label("User name").fill("")
    await page.get_by_label("User name").focus()
    await page.keyboard.type(LOCAL_ADMIN)
    await page.keyboard.press("Tab")
    assert "local-password" == await page.evaluate("() => document.activeElement.id")
    assert "solid" == await page.evaluate(
        "() => getComputedStyle(document.activeElement).outlineStyle")
    await page.keyboard.type(LOCAL_PASSWORD)
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Overview").wait_for()
