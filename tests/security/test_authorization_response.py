"""The authorization response: state, browser binding, code replay, RFC 9207 iss, error=.

Forged, stale, replayed or misdirected responses get a 400 page; a provider's ``error=``
gets a 403 page that says what to do (with the AADSTS code); never a session.
"""

from __future__ import annotations

import html
import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from agent import explain
from agent.devidp import Fault
from agent.devidp.faults import entra_error_body
from agent.explain import AADSTS
from tests.harness import Browser, Stack, StackFactory
from tests.security.conftest import ADMIN, READER, Outcome, attempt, callback, plant_cookie


def with_params(url: str, **changes: str | None) -> str:
    """``url`` with query parameters replaced (``None`` removes one)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlunsplit(parts._replace(query=urlencode(params)))


async def authorized(stack: Stack, browser: Browser, username: str = ADMIN) -> str:
    """Start at the agent and sign in at the provider; the callback URL, not yet delivered."""
    return await browser.authenticate(await browser.start(), username)


def assert_rejected(outcome: Outcome, reason: str, status: int = 400) -> None:
    assert (status, [reason]) == (outcome.status, outcome.refused_reasons), outcome.text
    assert "What to do:" in outcome.text
    assert not outcome.has_session


class TestState:
    async def test_missing(self, stack: Stack) -> None:
        """A callback without state is rejected."""
        browser = stack.browser()
        url = with_params(await authorized(stack, browser), state=None)
        assert_rejected(await callback(stack, browser, url), "state_missing")

    async def test_unknown(self, stack: Stack) -> None:
        """A state the agent never issued is rejected."""
        browser = stack.browser()
        url = with_params(await authorized(stack, browser), state="forged-state-value")
        assert_rejected(await callback(stack, browser, url), "state_unknown")

    async def test_expired(self, stack: Stack) -> None:
        """A response arriving after session.sign_in_timeout is rejected as expired."""
        browser = stack.browser()
        url = await authorized(stack, browser)
        stack.clock.advance(stack.settings.session.sign_in_timeout + 1)
        outcome = await callback(stack, browser, url)
        assert_rejected(outcome, "state_expired")
        assert "expired" in outcome.text

    async def test_already_used(self, stack: Stack) -> None:
        """The same response delivered twice: the second is rejected, the first session lives."""
        browser = stack.browser()
        url = await authorized(stack, browser)
        first = await callback(stack, browser, url)
        assert 302 == first.status
        again = stack.browser()
        again_url = url  # an attacker replaying a captured response from its own browser
        outcome = await callback(stack, again, again_url)
        assert_rejected(outcome, "state_unknown")
        second = await callback(stack, browser, url)
        assert (400, ["state_unknown"]) == (second.status, second.refused_reasons)
        assert second.has_session  # the replay did not end the real session

    async def test_started_in_another_browser(self, stack: Stack) -> None:
        """A response for a sign-in started elsewhere is rejected and does not consume it."""
        victim, attacker = stack.browser(), stack.browser()
        url = await authorized(stack, victim)
        outcome = await callback(stack, attacker, url)
        assert_rejected(outcome, "browser_mismatch")
        assert 302 == (await callback(stack, victim, url)).status

    async def test_forged_binding_cookie(self, stack: Stack) -> None:
        """A browser presenting a binding cookie of its own choosing is still a mismatch."""
        victim, attacker = stack.browser(), stack.browser()
        url = await authorized(stack, victim)
        plant_cookie(stack, attacker, "A" * 43, name="__Host-sso_signin")
        assert_rejected(await callback(stack, attacker, url), "browser_mismatch")


class TestCode:
    async def test_code_replayed_in_a_new_sign_in(self, stack: Stack) -> None:
        """A redeemed code pasted into a fresh sign-in is refused by the token endpoint."""
        browser = stack.browser()
        used = await authorized(stack, browser)
        assert 302 == (await callback(stack, browser, used)).status
        browser.http.cookie_jar.clear_domain("127.0.0.1")  # forget the first session
        browser_binding = await authorized(stack, browser, READER)
        replay = with_params(browser_binding, code=dict(parse_qsl(urlsplit(used).query))["code"])
        outcome = await callback(stack, browser, replay)
        assert_rejected(outcome, "code_rejected")
        assert 2 == stack.idp.requests["token"]  # the replay reached the token endpoint
        #["token"] == 2

    async def test_code_missing(self, stack: Stack) -> None:
        """A response with a state but no code and no error is rejected."""
        browser = stack.browser()
        url = with_params(await authorized(stack, browser), code=None)
        assert_rejected(await callback(stack, browser, url), "code_missing")

    async def test_duplicate_parameter(self, stack: Stack) -> None:
        """A response repeating a parameter (parameter pollution) is rejected."""
        browser = stack.browser()
        url = await authorized(stack, browser)
        outcome = await callback(stack, browser, url + "&code=second")
        assert_rejected(outcome, "duplicate_parameter")


class TestIssuerParameter:
    async def test_iss_differs(self, stack: Stack) -> None:
        """RFC 9207: an iss parameter naming another issuer is rejected (mix-up attack)."""
        stack.idp.iss_override = "https://login.microsoftonline.com/common/v2.0"
        assert_rejected(await attempt(stack), "iss_mismatch")

    async def test_iss_differs_by_trailing_slash(self, stack: Stack) -> None:
        """RFC 9207 iss is compared exactly."""
        stack.idp.iss_override = stack.idp.issuer + "/"
        assert_rejected(await attempt(stack), "iss_mismatch")

    async def test_iss_missing_when_advertised(self, new_stack: StackFactory) -> None:
        """When discovery advertises the iss parameter, a response without it is rejected."""
        stack = await new_stack(idp_options={"iss_parameter_supported": True})
        browser = stack.browser()
        url = await authorized(stack, browser)
        assert stack.idp.issuer == dict(parse_qsl(urlsplit(url).query))["iss"]
        stripped = with_params(url, iss=None)
        assert_rejected(await callback(stack, browser, stripped), "iss_missing")
        assert 302 == (await attempt(stack)).status  # with iss: accepted


PROVIDER_ERRORS = ["access_denied", "interaction_required", "login_required",
                   "consent_required"]
AADSTS_CASES = {
    "50011": "The redirect URI specified in the request does not match.",
    "50105": "The signed in user is not assigned to a role for the application.",
    "50076": "Due to a configuration change you must use multi-factor authentication.",
    "50079": "The user is required to use multi-factor authentication.",
    "53003": "Access has been blocked by Conditional Access policies.",
    "65001": "The user or administrator has not consented to use the application.",
    "700016": "Application was not found in the directory.",
    "90002": "Tenant not found.",
    "9002327": "Tokens issued for the Single-Page Application client-type may only be "
               "redeemed via cross-origin requests.",
}


class TestProviderErrors:
    @pytest.mark.parametrize("error", PROVIDER_ERRORS)
    async def test_error_response_page(self, stack: Stack, error: str) -> None:
        """error=... from Entra ID: a 403 page naming the error and what to do; idp_error logged."""
        stack.idp.authorize_error = (error, f"{error} happened")
        outcome = await attempt(stack)
        assert_rejected(outcome, "idp_error", status=403)
        assert error in outcome.text
        assert explain.PROVIDER_ERRORS[error].todo in html.unescape(outcome.text)
        assert [error] == [e["error"] for e in outcome.events("idp_error")]

    @pytest.mark.parametrize("code", sorted(AADSTS_CASES))
    async def test_aadsts_code_explained(self, stack: Stack, code: str) -> None:
        """An AADSTS code in error_description: the page shows it and the matching advice."""
        stack.idp.authorize_error = ("access_denied", f"AADSTS{code}: {AADSTS_CASES[code]}")
        outcome = await attempt(stack)
        assert_rejected(outcome, "idp_error", status=403)
        text = html.unescape(outcome.text)
        assert f"AADSTS{code}" in text
        assert AADSTS[code].title in text and AADSTS[code].todo in text
        assert [code] == [e["aadsts"] for e in outcome.events("idp_error")]

    @pytest.mark.parametrize(("code", "reason", "status"), [
        ("9002327", "client_credential_rejected", 503),  # the sensor's setup (platform)
        ("700016", "idp_error", 403)])
    async def test_token_endpoint_aadsts_explained(self, stack: Stack, code: str, reason: str,
                                                   status: int) -> None:
        """The same AADSTS advice when the token endpoint refuses the code redemption; a
        platform mismatch is a configuration problem (500), not a refusal of the user."""
        body = entra_error_body(int(code), AADSTS_CASES[code], "invalid_request", stack.clock())
        stack.idp.faults["token"] = Fault(status=400, body=json.dumps(body).encode())
        outcome = await attempt(stack)
        assert_rejected(outcome, reason, status=status)
        text = html.unescape(outcome.text)
        assert f"AADSTS{code}" in text and AADSTS[code].todo in text

    async def test_error_description_is_not_reflected_as_html(self, stack: Stack) -> None:
        """A hostile error_description cannot inject markup into the page."""
        stack.idp.authorize_error = ("access_denied", "<script>alert(1)</script>")
        outcome = await attempt(stack)
        assert 403 == outcome.status
        assert "<script>alert(1)</script>" not in outcome.text
