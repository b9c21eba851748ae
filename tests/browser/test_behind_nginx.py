"""A person in Debian's Chromium, in front of real nginx with the shipped snippets: the console
opened by IP address or another name, a deep link, a role that is too low, and an outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.devidp import DevIdentityProvider
from tests.browser.conftest import Chromium
from tests.browser.pages import enter_credentials
from tests.deploy.test_nginx_day_two import UNAVAILABLE, site

pytestmark = pytest.mark.browser


async def test_opened_under_another_name_a_deep_link_ends_signed_in_on_that_page(
        tmp_path: Path, idp: DevIdentityProvider, chromium: Chromium) -> None:
    """http://localhost:PORT/admin/report?from=…&to=… while redirect_uri names 127.0.0.1:
    SSO Sign-in, the provider's form, and the browser lands on that very report page under
    redirect_uri's host (not on "Sign-in started elsewhere")."""
    async with site(tmp_path, idp) as s:
        page = await chromium.page()
        deep = "/admin/report?from=2026-01-01&to=2026-02-01"
        await page.goto(s.url.replace("127.0.0.1", "localhost") + deep)
        await page.get_by_role("link", name="SSO Sign-in").wait_for()
        assert page.url.startswith(s.url + "/login?next=")
        await page.get_by_role("link", name="SSO Sign-in").click()
        await enter_credentials(page, "admin@contoso.example")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(s.url + deep)
        await chromium.screenshot(page, "deep-link")
        assert "console page /admin/report" in await page.content()
        report = [seen for seen in s.console_seen if seen["path"] == deep]
        assert report and report[0]["X-Auth-Request-Role"] == "admin"


async def test_a_read_only_user_sees_the_higher_role_page_then_the_outage_page(
        tmp_path: Path, idp: DevIdentityProvider, chromium: Chromium) -> None:
    """A Read only user on an Admin location sees the agent's page with 403; when the agent
    stops, the console shows nginx's "Sign-in service unavailable" with 503."""
    async with site(tmp_path, idp) as s:
        page = await chromium.page()
        await page.goto(s.url + "/overview")
        await page.get_by_role("link", name="SSO Sign-in").click()
        await enter_credentials(page, "reader@contoso.example")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(s.url + "/overview")
        response = await page.goto(s.url + "/admin/users")
        assert response is not None and response.status == 403
        await page.get_by_role("heading", name="This page needs a higher role").wait_for()
        await chromium.screenshot(page, "role-too-low")
        await s.stop_agent()
        response = await page.goto(s.url + "/overview")
        assert response is not None and response.status == 503
        await page.get_by_role("heading", name=UNAVAILABLE).wait_for()
        await chromium.screenshot(page, "agent-down")
