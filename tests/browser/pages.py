"""Steps a person takes in the browser, shared by the journey and accessibility tests."""

from __future__ import annotations

from playwright.async_api import Page, Response

from tests.harness import PASSWORD, Stack

COOKIE = "__Host-sensor_session"


async def open_sign_in(page: Page, stack: Stack, path: str = "/login") -> None:
    await page.goto(stack.url + path)
    await page.get_by_role("link", name="SSO Sign-in").wait_for()


async def enter_credentials(page: Page, username: str, password: str = PASSWORD) -> None:
    """At the provider's sign-in page (reached via SSO Sign-in), type the account and password."""
    await page.get_by_label("Email or user principal name").fill(username)
    await page.get_by_label("Password").fill(password)


async def submit_to_agent(page: Page, stack: Stack, button: str) -> Response:
    """Click ``button`` at the provider; return the agent's answer to the callback."""
    callback = stack.settings.entra.redirect_path
    async with page.expect_response(lambda r: agents_answer(r, stack.url + callback)) as info:
        await page.get_by_role("button", name=button).click()
    response = await info.value
    await page.wait_for_load_state()
    return response


def agents_answer(response: Response, callback: str) -> bool:
    """The agent's final answer to the callback: its redirect into the console, or the
    refusal page the callback sent the browser to (``/auth/sso/refused``, a clean address)."""
    if response.url.startswith(callback):
        return response.status != 303
    return response.url.split("?")[0].endswith("/auth/sso/refused")


async def sign_in(page: Page, stack: Stack, username: str) -> Response:
    """The whole sign-in for a user without MFA; returns the agent's answer to the callback."""
    await open_sign_in(page, stack)
    await page.get_by_role("link", name="SSO Sign-in").click()
    await enter_credentials(page, username)
    return await submit_to_agent(page, stack, "Sign in")


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()
