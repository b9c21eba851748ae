"""Dependencies failing: Entra ID (token endpoint, discovery), its signing keys, Microsoft Graph.

Each failure ends the sign-in with a 502 page naming the dependency and an audited reason;
existing sessions keep working; /readyz reports it; retries are bounded; and once the
dependency is back the next user signs in at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.web import keys
from tests.harness import Stack, StackFactory
from tests.security.conftest import (
    ADMIN,
    READER,
    Outcome,
    attempt,
    discovery_answered,
    session_works,
)

GRAPH_USER = "graphprofile@contoso.example"  # token without profile claims or groups: Graph
TIMEOUT = 1.0


def fast_timeout(data: dict[str, Any]) -> None:
    data["entra"]["timeout"] = "1s"


@pytest.fixture
async def stack(tmp_path: Path, new_stack: StackFactory) -> Stack:
    return await new_stack(idp_options={"state_dir": tmp_path / "idp"}, config=fast_timeout)


def assert_unavailable(outcome: Outcome, reason: str, dependency: str) -> None:
    assert (502, [reason]) == (outcome.status, outcome.refused_reasons), outcome.text
    assert f"because {dependency} is unreachable" in outcome.text
    assert "What to do:" in outcome.text
    assert not outcome.has_session


async def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    resp = await stack.browser().get("/readyz")
    return resp.status, await resp.json()


async def signed_in(stack: Stack, username: str = READER) -> Any:
    browser = stack.browser()
    assert 302 == (await browser.sign_in(username)).status
    return browser


async def recovers(stack: Stack, username: str = GRAPH_USER) -> None:
    """The dependency is back: the very next sign-in succeeds and /readyz is clean again."""
    stack.idp.reset_misbehaviour()
    outcome = await attempt(stack, username)
    assert (302, True) == (outcome.status, outcome.has_session), outcome.text
    assert {"status": "ready"} == (await readyz(stack))[1]


GRAPH_FAULTS = {
    "5xx": (Fault(status=500, body=b'{"error":{"code":"generalException"}}'), "graph_error"),
    "503_html": (Fault(status=503, body=b"<html>down</html>", content_type="text/html"),
                 "graph_error"),
    "garbage_200": (Fault(status=200, body=b"\x00\xffnot json", content_type="text/plain"),
                    "microsoft_graph_bad_response"),
    "wrong_shape": (Fault(status=200, body=b'["a list"]'), "graph_error"),
    "slow": (Fault(delay=TIMEOUT + 0.5), "microsoft_graph_timeout"),
}


def assert_misconfigured(outcome: Outcome, reason: str, words: str) -> None:
    """A configuration problem: HTTP 503 (not 502 "unreachable"; never 500), the fix shown."""
    assert (503, [reason]) == (outcome.status, outcome.refused_reasons), outcome.text
    assert "is unreachable" not in outcome.text
    assert "Sign-in is not set up correctly" in outcome.text and words in outcome.text
    assert not outcome.has_session


class TestGraph:
    @pytest.mark.parametrize("case", sorted(GRAPH_FAULTS))
    async def test_graph_failure(self, stack: Stack, case: str) -> None:
        """Graph failing: 502 naming Microsoft Graph; sessions live; /readyz says degraded
        only for a transport failure (what Graph answered to one sign-in never counts)."""
        existing = await signed_in(stack)
        fault, reason = GRAPH_FAULTS[case]
        stack.idp.faults["graph_me"] = fault
        outcome = await attempt(stack, GRAPH_USER)
        assert_unavailable(outcome, reason, "Microsoft Graph")
        assert await session_works(existing)
        status, body = await readyz(stack)
        assert 200 == status
        assert reason.endswith("_timeout") == ("Microsoft Graph" in body.get("degraded", {}))
        await recovers(stack)

    async def test_refused_for_missing_admin_consent(self, stack: Stack) -> None:
        """Graph's 403 (no admin consent) is a configuration problem: 500 saying to grant
        admin consent, not a 502 "unreachable"; an answer, so Graph is not degraded."""
        existing = await signed_in(stack)
        stack.idp.faults["graph_me"] = Fault(
            status=403, body=b'{"error":{"code":"Authorization_RequestDenied"}}')
        outcome = await attempt(stack, GRAPH_USER)
        assert_misconfigured(outcome, "graph_forbidden", "grant admin consent")
        assert await session_works(existing)
        assert "Microsoft Graph" not in (await readyz(stack))[1].get("degraded", {})
        await recovers(stack)

    async def test_group_check_failure_fails_closed(self, stack: Stack) -> None:
        """checkMemberGroups failing never means 'no groups': 502, no session."""
        stack.idp.faults["graph_check_member_groups"] = Fault(status=500)
        assert_unavailable(await attempt(stack, GRAPH_USER), "graph_error", "Microsoft Graph")
        await recovers(stack)

    async def test_throttled_with_retry_after_is_retried(self, stack: Stack) -> None:
        """One 429 with Retry-After: the agent waits as told and the sign-in succeeds."""
        stack.idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "1"},
                                             body=b'{"error":{"code":"TooManyRequests"}}',
                                             times=1)
        started = time.monotonic()
        outcome = await attempt(stack, GRAPH_USER)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text
        assert time.monotonic() - started >= 1.0
        assert 2 == stack.idp.requests["graph_me"]

    async def test_throttled_for_good_retries_are_bounded(self, stack: Stack) -> None:
        """Graph keeps answering 429: three calls in all, then a 502 naming Graph."""
        stack.idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "0"},
                                             body=b'{"error":{"code":"TooManyRequests"}}')
        outcome = await attempt(stack, GRAPH_USER)
        assert_unavailable(outcome, "graph_throttled", "Microsoft Graph")
        assert 3 == stack.idp.requests["graph_me"]
        await recovers(stack)


class TestTokenEndpoint:
    @pytest.mark.parametrize("case,fault,reason", [
        ("5xx", Fault(status=500, body=b'{"error":"server_error"}'), "idp_error"),
        ("503_html", Fault(status=503, body=b"<html>busy</html>", content_type="text/html"),
         "idp_error"),
        ("garbage_200", Fault(status=200, body=b"<html>captive portal</html>",
                              content_type="text/html"), "idp_bad_response"),
        ("slow", Fault(delay=TIMEOUT + 0.5), "idp_timeout"),
    ])
    async def test_token_endpoint_failure(self, stack: Stack, case: str, fault: Fault,
                                          reason: str) -> None:
        """Token endpoint failing: 502 naming Entra ID, bounded tries, next user at once;
        /readyz degraded only for a transport failure (the rule of signin/health.py)."""
        existing = await signed_in(stack)
        before = stack.idp.requests["token"]
        stack.idp.faults["token"] = fault
        outcome = await attempt(stack, ADMIN)
        assert_unavailable(outcome, reason, "Entra ID")
        assert 1 <= stack.idp.requests["token"] - before <= 2
        assert await session_works(existing)
        degraded = (await readyz(stack))[1].get("degraded", {})
        assert reason.endswith("_timeout") == ("Entra ID" in degraded), degraded
        await recovers(stack, ADMIN)

    async def test_identity_provider_down(self, stack: Stack) -> None:
        """Entra ID unreachable between the user's sign-in there and the redemption."""
        existing = await signed_in(stack)
        browser = stack.browser()
        callback = await browser.authenticate(await browser.start(), ADMIN)
        port = int(stack.idp.url.rsplit(":", 1)[1])
        await stack.idp.stop()
        try:
            from tests.security.conftest import callback as deliver
            outcome = await deliver(stack, browser, callback)
            assert_unavailable(outcome, "idp_unreachable", "Entra ID")
            assert await session_works(existing)
            assert 200 == (await browser.get("/healthz")).status
        finally:
            await stack.idp.start(port)
        await recovers(stack, ADMIN)


class TestSigningKeys:
    @pytest.mark.parametrize("fault", [
        Fault(status=500), Fault(status=200, body=b"garbage", content_type="text/plain"),
        Fault(delay=TIMEOUT + 0.5),
    ], ids=["5xx", "garbage", "slow"])
    async def test_jwks_failing_during_rotation(self, stack: Stack, fault: Fault) -> None:
        """A rotated key cannot be fetched: 502 naming the signing keys; cached keys kept."""
        existing = await signed_in(stack)
        stack.idp.rotate_keys()
        stack.idp.faults["jwks"] = fault
        outcome = await attempt(stack, ADMIN)
        assert_unavailable(outcome, "jwks_unreachable", "Entra ID signing keys")
        assert await session_works(existing)
        status, body = await readyz(stack)
        assert 200 == status and "Entra ID signing keys" in body["degraded"]
        # The forced refetch is rate-limited: let the interval pass, as time would.
        stack.clock.advance(stack.settings.entra.jwks_refetch_interval + 1)
        await recovers(stack, ADMIN)

    async def test_jwks_down_cached_keys_keep_serving(self, stack: Stack) -> None:
        """JWKS unreachable but no rotation: sign-ins go on with the cached keys."""
        stack.idp.faults["jwks"] = Fault(status=500)
        outcome = await attempt(stack, ADMIN)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text


class TestStartup:
    @pytest.mark.parametrize("fault", [
        Fault(status=500, body=b"{}"), Fault(status=200, body=b"<html>", content_type="text/html"),
        Fault(delay=TIMEOUT + 0.5),
    ], ids=["5xx", "garbage", "slow"])
    async def test_discovery_failing_at_start(self, new_stack: StackFactory, fault: Fault) -> None:
        """Discovery failing at start: /readyz 503 with the reason, sign-in 502, then ready."""
        stack = await new_stack(config=fast_timeout, start=False)
        stack.idp.faults["discovery"] = fault
        await stack.start_agent(wait_ready=False)
        await discovery_answered(stack)
        status, body = await readyz(stack)
        assert 503 == status and body["reason"], body
        resp = await stack.browser().get("/auth/sso/start")
        assert 502 == resp.status
        assert "because Entra ID is unreachable" in await resp.text()
        stack.idp.reset_misbehaviour()
        await stack.wait_ready(timeout=8)
        attempts = stack.idp.requests["discovery"]
        assert attempts <= 4  # backoff, not a tight loop
        outcome = await attempt(stack, ADMIN)
        assert 302 == outcome.status, outcome.text


async def test_msal_failing_to_load_at_the_first_sign_in(stack: Stack) -> None:
    """MSAL is built at the first sign-in (not at start): when its discovery fetch fails
    there, the sign-in is refused with the 502 page, audited with its reason; /readyz is not
    degraded by it (the agent's own probe of discovery decides that, signin/health.py); the
    next sign-in succeeds."""
    assert stack.app is not None
    assert not stack.app[keys.SIGN_IN].idp.client.loaded  # nobody signed in yet
    stack.idp.faults["discovery"] = Fault(status=500, body=b"{}")
    with capture_logs() as logs:
        resp = await stack.browser().get("/auth/sso/start")
        text = await resp.text()
    assert 502 == resp.status
    assert "because Entra ID is unreachable" in text
    assert [("sso_login_refused", "idp_bad_response", 502)] == [
        (e["event"], e["reason"], e["status"]) for e in logs
        if e["event"] == "sso_login_refused"]
    _, body = await readyz(stack)
    assert "degraded" not in body, body
    await recovers(stack, ADMIN)


async def test_no_client_side_throttle_after_a_failure(stack: Stack) -> None:
    """Five users in a row hit a failing token endpoint, then the sixth signs in at once."""
    stack.idp.faults["token"] = Fault(status=503, body=json.dumps(
        {"error": "temporarily_unavailable"}).encode(), times=5)
    for _ in range(5):
        assert 502 == (await attempt(stack, ADMIN)).status
    started = time.monotonic()
    outcome = await attempt(stack, READER)
    assert (302, True) == (outcome.status, outcome.has_session), outcome.text
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("error", [{"x": {}}, ["invalid_grant"], 7,
                                   "server_error\r\nX-Injected: 1"])
async def test_one_odd_error_value_does_not_break_every_later_sign_in(
        stack: Stack, error: object) -> None:
    """A token answer whose ``error`` is an object, a list, a number or a string with a line
    break (found by test_hostile_answers.py): that sign-in is refused, and the next user
    signs in. MSAL kept the value for a telemetry header on every later request, which
    then failed (TypeError, or requests' InvalidHeader) for every user until a restart."""
    stack.idp.faults["token"] = Fault(status=400, body=json.dumps({"error": error}).encode(),
                                      times=1)
    refused = await attempt(stack, ADMIN)
    assert refused.status in (403, 502) and refused.refused_reasons, refused.text
    outcome = await attempt(stack, READER)
    assert (302, True) == (outcome.status, outcome.has_session), outcome.text
