"""The words a real tenant's AADSTS codes get: at sign-in on the error page (agent/explain.py),
on refresh in the session_revoked line (agent/signin/reasons.py)."""

from __future__ import annotations

import html

import pytest

from agent.explain import AADSTS
from agent.signin.reasons import AADSTS_REASONS
from tests.harness import Stack

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
