"""Every page a person meets passes axe-core, works by keyboard and reads on any screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.browser.conftest import Chromium, axe_check, passed, violations
from tests.browser.pages import enter_credentials, open_sign_in, sign_in, submit_to_agent, text
from tests.harness import Stack

pytestmark = pytest.mark.browser


async def assert_accessible(page: Page, axe: Path, name: str, form: bool = False) -> None:
    results = await axe_check(page, axe)
    assert [] == violations(results), name
    # The checks the issue names really ran on this page (axe skips rules with no targets).
    expected = {"color-contrast"} | ({"label"} if form else set())
    assert expected <= passed(results), name


class TestAxe:
    async def test_every_page_of_the_journey_has_no_violations(
            self, stack: Stack, chromium: Chromium, axe_source: Path) -> None:
        """Sign-in, provider (with a wrong password, MFA), Overview, refusals, signed out."""
        page = await chromium.page(bypass_csp=True)
        await open_sign_in(page, stack)
        await assert_accessible(page, axe_source, "sign-in")

        await page.get_by_role("link", name="SSO Sign-in").click()
        await assert_accessible(page, axe_source, "provider sign-in", form=True)
        await enter_credentials(page, "mfa@contoso.example", "wrong password")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("alert").wait_for()
        await chromium.screenshot(page, "provider-wrong-password")
        await assert_accessible(page, axe_source, "provider wrong password", form=True)

        await enter_credentials(page, "mfa@contoso.example")
        await page.get_by_role("button", name="Sign in").click()
        number = await text(page, "#mfa-number")
        await assert_accessible(page, axe_source, "provider approve sign-in", form=True)
        await page.get_by_label("Number entered in the Authenticator app").fill(number)
        await submit_to_agent(page, stack, "Approve")
        await assert_accessible(page, axe_source, "overview")

        await page.goto(stack.url + "/admin")
        await assert_accessible(page, axe_source, "admin page refused")
        await page.goto(stack.url + "/")
        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_role("status").wait_for()
        await assert_accessible(page, axe_source, "signed out")

        await page.goto(stack.url + stack.settings.entra.redirect_path + "?state=x&code=y")
        await chromium.screenshot(page, "sign-in-response-rejected")
        await assert_accessible(page, axe_source, "sign-in response rejected")

    async def test_the_refusal_page_has_no_violations(
            self, stack: Stack, chromium: Chromium, axe_source: Path) -> None:
        """The page naming a missing attribute (an AADSTS-free 403) passes too."""
        page = await chromium.page(bypass_csp=True)
        assert 403 == (await sign_in(page, stack, "nolastname@contoso.example")).status
        await assert_accessible(page, axe_source, "missing last name")

    async def test_a_page_with_a_violation_is_caught(
            self, stack: Stack, chromium: Chromium, axe_source: Path) -> None:
        """The check can fail: an unlabeled field and grey-on-white text are reported."""
        page = await chromium.page(bypass_csp=True)
        await open_sign_in(page, stack)
        await page.evaluate("""() => {
            const p = document.querySelector('.help'); p.style.color = '#bbb';
            document.querySelector('main').append(document.createElement('input'));
        }""")
        found = {v.split(":")[0] for v in violations(await axe_check(page, axe_source))}
        assert {"color-contrast", "label"} <= found


async def focus_outline(page: Page) -> object:
    """The focused element's outline style."""
    return await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")


class TestKeyboard:
    async def test_the_whole_journey_by_keyboard_with_visible_focus(
            self, stack: Stack, chromium: Chromium) -> None:
        """Tab to SSO Sign-in, type credentials, Enter; Tab to Sign out, Enter: no mouse."""
        page = await chromium.page()
        await open_sign_in(page, stack)
        await page.keyboard.press("Tab")
        assert "SSO Sign-in" == await page.evaluate("() => document.activeElement.textContent")
        assert "solid" == await focus_outline(page)
        await page.keyboard.press("Enter")
        await page.get_by_label("Password").wait_for()
        await page.keyboard.type("admin@contoso.example")  # the account field has focus
        await page.keyboard.press("Tab")
        await page.keyboard.type("Passw0rd!")
        async with page.expect_response(lambda r: r.url.startswith(stack.url)):
            await page.keyboard.press("Enter")
        await page.get_by_role("heading", name="Overview").wait_for()
        await page.keyboard.press("Tab")
        assert "sign-out" == await page.evaluate("() => document.activeElement.id")
        assert "solid" == await focus_outline(page)
        await chromium.screenshot(page, "overview-sign-out-focused")
        await page.keyboard.press("Enter")
        await page.get_by_role("status").wait_for()
        assert "You have signed out." == await text(page, "[role=status]")


SCREENS = {"control-room": {"width": 1920, "height": 1080},
           "laptop": {"width": 1366, "height": 768},
           "narrow": {"width": 390, "height": 844}}


class TestScreens:
    @pytest.mark.parametrize("screen", list(SCREENS))
    async def test_sign_in_page_fits_and_reads(self, stack: Stack, chromium: Chromium,
                                               screen: str) -> None:
        """The button is on screen without scrolling, no sideways scroll, text ≥ 16 px."""
        page = await chromium.page(screen, viewport=SCREENS[screen])
        await open_sign_in(page, stack)
        await chromium.screenshot(page, f"sign-in-{screen}")
        box = await page.get_by_role("link", name="SSO Sign-in").bounding_box()
        assert box is not None and box["y"] + box["height"] <= SCREENS[screen]["height"]
        assert await page.evaluate(
            "() => document.documentElement.scrollWidth <= window.innerWidth")
        size = await page.evaluate(
            "() => parseFloat(getComputedStyle(document.querySelector('p')).fontSize)")
        assert size >= (18 if screen == "control-room" else 16)
