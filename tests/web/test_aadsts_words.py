"""The words a real tenant's AADSTS codes get: at sign-in on the error page (agent/explain.py),
on refresh in the session_revoked line (agent/signin/reasons.py)."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Any

import pytest

from agent.explain import AADSTS
from agent.signin.reasons import AADSTS_REASONS
from tests.harness import Stack, make_stack

SIGN_IN_CODES = ["90094", "90095", "65004", "50020", "50034", "90072", "90038", "900432",
                 "700005", "90002", "50053"]
REFRESH_CODES = ["50105", "50078", "53000", "53001", "530032", "530035", "50055", "50144",
                 "50089", "65001", "53003", "50053"]


class TestSignInWords:
    @pytest.mark.parametrize(("code", "words"), [
        ("50020", "invite your account as a guest"),
        ("90094", "Grant admin consent"),
        ("90002", "check entra.cloud first"),
        ("50053", "flagged for malicious activity"),
    ])
    async def test_the_page_says_what_the_code_means(self, stack: Stack, code: str,
                                                     words: str) -> None:
        """Entra ID sends the code back from authorize: the page explains it in words."""
        stack.idp.authorize_error = ("access_denied", f"AADSTS{code}: reworded by Microsoft")
        resp = await stack.browser().sign_in("admin@contoso.example")
        page = html.unescape(await resp.text())
        assert 403 == resp.status and words in page and f"AADSTS{code}" in page

    def test_every_code_a_tenant_returns_at_sign_in_has_words(self) -> None:
        """Each code a real tenant returns at sign-in is explained, not shown bare."""
        assert [] == [code for code in SIGN_IN_CODES if code not in AADSTS]


class TestRefreshWords:
    def test_every_code_a_tenant_returns_on_refresh_has_words(self) -> None:
        """Each code a real tenant returns on refresh has a reason for the audit line; 50053 names
        both causes (a locked account, or the sensor's flagged address)."""
        assert [] == [code for code in REFRESH_CODES if code not in AADSTS_REASONS]
        assert "locked" in AADSTS_REASONS["50053"] and "sensor's" in AADSTS_REASONS["50053"]


class TestWrongTenant:
    async def test_a_tenant_entra_does_not_know_is_worded_as_misconfiguration(
            self, tmp_path: Path) -> None:
        """Discovery answers AADSTS90002 (a wrong tenant id): /login and the SSO button's page
        say the sensor's sign-in is set up wrongly and to tell the administrator, never that
        Entra ID is unreachable."""
        def wrong_tenant(data: dict[str, Any]) -> None:
            data["entra"]["tenant_id"] = "0d9c3f1e-1111-4222-8333-944455556666"

        stack = await make_stack(tmp_path, config=wrong_tenant, start=False)
        try:
            await stack.start_agent(wait_ready=False)
            browser = stack.browser()
            for _ in range(100):  # the first discovery fetch, in the background
                if stack.idp.requests["discovery"]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            login = html.unescape(await (await browser.get("/login")).text())
            assert "misconfigured" in login and "administrator" in login, login
            assert "cannot reach" not in login
            resp = await browser.get("/auth/sso/start")
            page = html.unescape(await resp.text())
            assert 503 == resp.status  # a configuration problem, not 502 "unavailable"
            assert "Single sign-on is not set up correctly" in page, page
            assert "AADSTS90002" in page and "unreachable" not in page
        finally:
            await stack.close()
