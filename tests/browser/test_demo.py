"""The demo in Chromium as a newcomer meets it: no certificate warning on any page."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from agent.demo import serve_demo
from agent.devidp import DEMO_PASSWORD
from tests.browser.conftest import Chromium
from tests.harness import free_port

pytestmark = pytest.mark.browser


class TestDemoInChromium:
    async def test_mfa_user_walks_the_demo_without_certificate_errors(
            self, chromium: Chromium) -> None:
        """Certificate errors are NOT ignored: the demo's pages are loopback HTTP only."""
        port = free_port()
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_demo(port, ready=ready, stop=stop))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            page = await chromium.page("demo", ignore_https_errors=False)
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                response = await page.goto(f"{base}/readyz")
                if response is not None and response.status == 200:
                    break
                await asyncio.sleep(0.05)
            await page.goto(f"{base}/login")
            await page.get_by_role("link", name="SSO Sign-in").click()
            await page.get_by_label("Email or user principal name").fill("mfa@contoso.example")
            await page.get_by_label("Password").fill(DEMO_PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            number = (await page.locator("#mfa-number").inner_text()).strip()
            await chromium.screenshot(page, "demo-mfa")
            await page.locator("#number").fill(number)
            await page.get_by_role("button", name="Approve").click()
            await page.wait_for_url(f"{base}/")
            await chromium.screenshot(page, "demo-overview")
            assert "Security analyst" == (await page.locator("#user-role").inner_text()).strip()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
