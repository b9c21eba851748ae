"""What a real tenant answers a refresh with, and what the sensor does about it.

Each class of the token endpoint's error answers (agent/entra/answers.py) is played by the local
provider with Entra's code and an Entra-shaped body, through real HTTP: the session's fate and
the words of its audit line. The user or the application no longer allowed, and the sensor's
own credential rejected, end the session at the next re-validation; only what says nothing
about either (loop detection among them) keeps it for the grace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.devidp import Fault
from agent.devidp.application import withdraw_consent
from agent.entra.answers import classify
from tests.fleet.helpers import client_certificate
from tests.harness import Browser, Stack, StackFactory, short_intervals
from tests.signin.test_revalidation import (
    check_status,
    events,
    eventually,
    one_interval_later,
    signed_in,
)

SECRET = "s3cr3t-value~from-the-portal"
ANALYST = "analyst@contoso.example"
READER = "reader@contoso.example"


async def ended_at_next_revalidation(stack: Stack,
                                     browser: Browser) -> list[MutableMapping[str, Any]]:
    """One interval passes: the session ends; the audit lines written meanwhile."""
    with capture_logs() as logs:
        await one_interval_later(stack)

        async def out() -> bool:
            return await check_status(browser) == 401

        await eventually(out, "the session ends at its next re-validation")
    return logs


def revoked(logs: list[MutableMapping[str, Any]]) -> tuple[str, str | None, str]:
    [line] = events(logs, "session_revoked")
    return line["reason"], line["aadsts"], line["detail"]


async def web_stack(new_stack: StackFactory, tmp_path: Path) -> Stack:
    secret = tmp_path / "client-secret"
    secret.write_text(SECRET + "\n")

    def config(data: dict[str, Any]) -> None:
        short_intervals(data)
        data["entra"].update(platform="web", client_secret_file=str(secret))

    return await new_stack(idp_options={"spa": False, "client_secret": SECRET}, config=config)


class TestUserOrApplicationNoLongerAllowed:
    @pytest.mark.parametrize(("change", "code", "words"), [
        (lambda idp: setattr(idp.policies, "app_disabled", True), "7000112",
         "disabled in Entra ID"),
        (lambda idp: setattr(idp.policies, "app_deleted", True), "700016",
         "not in the tenant any more"),
    ])
    async def test_application_disabled_or_deleted_ends_every_session(
            self, new_stack: StackFactory, change: Callable[[Any], None], code: str,
            words: str) -> None:
        """The administrator's kill switch: every SSO session ends at its next re-validation
        (application_refused, with the code), not after the hour-long grace."""
        stack = await new_stack(config=short_intervals)
        analyst = await signed_in(stack, ANALYST)
        reader = await signed_in(stack, READER)
        change(stack.idp)
        with capture_logs() as logs:
            await one_interval_later(stack)

            async def both_out() -> bool:
                return await check_status(analyst) == 401 and await check_status(reader) == 401

            await eventually(both_out, "every session ends")
        lines = events(logs, "session_revoked")
        assert [("application_refused", code)] * 2 == [(e["reason"], e["aadsts"])
                                                       for e in lines]
        assert all(words in e["detail"] for e in lines)
        assert not events(logs, "revalidation_unavailable")

    async def test_consent_withdrawn_ends_the_session(self, new_stack: StackFactory) -> None:
        """The application's permission grant revoked for the user: AADSTS65001, in words."""
        stack = await new_stack(config=short_intervals)
        browser = await signed_in(stack, ANALYST)
        withdraw_consent(stack.idp, ANALYST)
        reason, code, detail = revoked(await ended_at_next_revalidation(stack, browser))
        assert ("invalid_grant", "65001") == (reason, code)
        assert "consent for the sensor's application was withdrawn" in detail

    async def test_conditional_access_location_block_ends_the_session(
            self, new_stack: StackFactory) -> None:
        """A location policy that does not trust the sensor's own address refuses its
        refreshes (AADSTS53003); the words point at the sensor's egress address."""
        stack = await new_stack(config=short_intervals)
        browser = await signed_in(stack, ANALYST)  # the browser's sign-in was allowed
        stack.idp.policies.blocked_addresses.add("127.0.0.1")
        reason, code, detail = revoked(await ended_at_next_revalidation(stack, browser))
        assert ("invalid_grant", "53003") == (reason, code)
        assert "sensor's (or its proxy's) address" in detail and "named location" in detail

    async def test_the_code_is_read_from_error_codes_not_the_description(
            self, new_stack: StackFactory) -> None:
        """A description that names another code (Microsoft may change its text) is not
        read: error_codes says the account is disabled."""
        stack = await new_stack(config=short_intervals)
        browser = await signed_in(stack, ANALYST)
        body = {"error": "invalid_grant", "error_description": "AADSTS7000112: reworded text",
                "error_codes": [50057], "timestamp": "2026-01-01 00:00:00Z",
                "trace_id": "t", "correlation_id": "c"}
        stack.idp.faults["token"] = Fault(status=400, body=json.dumps(body).encode())
        reason, code, detail = revoked(await ended_at_next_revalidation(stack, browser))
        assert ("invalid_grant", "50057", "the account is disabled in Entra ID") == (
            reason, code, detail)


class TestTheSensorsCredential:
    async def test_expired_secret_ends_sessions_and_tells_the_operator_once(
            self, tmp_path: Path, new_stack: StackFactory) -> None:
        """AADSTS7000222: both sessions end; client_credential_rejected is logged once with
        the fix; /readyz says not ready with it until a refresh succeeds again."""
        stack = await web_stack(new_stack, tmp_path)
        analyst = await signed_in(stack, ANALYST)
        reader = await signed_in(stack, READER)
        stack.idp.policies.client_secret_expired = True
        with capture_logs() as logs:
            await one_interval_later(stack)

            async def both_out() -> bool:
                return await check_status(analyst) == 401 and await check_status(reader) == 401

            await eventually(both_out, "every session ends")
        lines = events(logs, "session_revoked")
        assert [("client_credential_rejected", "7000222")] * 2 == [
            (e["reason"], e["aadsts"]) for e in lines]
        [operator] = events(logs, "client_credential_rejected")
        assert "7000222" == operator["aadsts"] and "create a new secret" in operator["fix"]
        ready = await stack.browser().get("/readyz")
        answer = await ready.json()
        assert 503 == ready.status and "create a new secret" in answer["fix"]
        stack.idp.policies.client_secret_expired = False  # the operator rotated it
        with capture_logs() as logs:
            await signed_in(stack, ANALYST)
        assert events(logs, "client_credential_accepted")
        assert 200 == (await stack.browser().get("/readyz")).status

    async def test_wrong_secret(self, tmp_path: Path, new_stack: StackFactory) -> None:
        """The secret was replaced in the portal (AADSTS7000215): the session ends and the
        fix says to write the secret's Value."""
        stack = await web_stack(new_stack, tmp_path)
        browser = await signed_in(stack, ANALYST)
        stack.idp.client_secret = "a-newer-secret"
        logs = await ended_at_next_revalidation(stack, browser)
        reason, code, detail = revoked(logs)
        [operator] = events(logs, "client_credential_rejected")
        assert ("client_credential_rejected", "7000215") == (reason, code)
        assert "Value (not its Secret ID)" in operator["fix"] and "Value" in detail

    async def test_certificate_no_longer_registered(self, tmp_path: Path,
                                                    new_stack: StackFactory) -> None:
        """The registration holds another certificate now (AADSTS700027): the session ends
        and the fix says to upload the certificate again."""
        (tmp_path / "other").mkdir()
        _, other_pem = client_certificate(tmp_path / "other")
        path, cert_pem = client_certificate(tmp_path)

        def config(data: dict[str, Any]) -> None:
            short_intervals(data)
            data["entra"].update(platform="web", client_certificate_file=str(path))

        stack = await new_stack(idp_options={"spa": False, "client_certificate_pem": cert_pem},
                                config=config)
        browser = await signed_in(stack, ANALYST)
        stack.idp.client_certificate_pem = other_pem
        logs = await ended_at_next_revalidation(stack, browser)
        reason, code, _ = revoked(logs)
        [operator] = events(logs, "client_credential_rejected")
        assert ("client_credential_rejected", "700027") == (reason, code)
        assert "upload the certificate" in operator["fix"]

    async def test_sign_in_with_an_expired_secret_is_explained(
            self, tmp_path: Path, new_stack: StackFactory) -> None:
        """A sign-in meets the same answer: 500 (a configuration problem), the page says the
        sensor's secret expired, and /readyz shows it."""
        stack = await web_stack(new_stack, tmp_path)
        stack.idp.policies.client_secret_expired = True
        resp = await stack.browser().sign_in(ANALYST)
        page = await resp.text()
        assert 503 == resp.status and "client secret has expired" in page
        assert 503 == (await stack.browser().get("/readyz")).status


class TestUnavailable:
    async def test_loop_detection_keeps_the_session_and_backs_off(
            self, new_stack: StackFactory) -> None:
        """AADSTS50196 (Entra's loop detection) says nothing about the user: the session
        lives on, re-validation pauses, and the line names the code."""
        stack = await new_stack(config=short_intervals)
        browser = await signed_in(stack, ANALYST)
        stack.idp.policies.loop_limit = (0, 300.0)  # every refresh is one too many
        tries = stack.idp.requests["token_refresh"]
        with capture_logs() as logs:
            await one_interval_later(stack)

            async def tried() -> bool:
                return stack.idp.requests["token_refresh"] > tries

            await eventually(tried, "a refresh was attempted")

            async def noted() -> bool:
                return bool(events(logs, "revalidation_unavailable"))

            await eventually(noted, "the outage is logged")
        assert 200 == await check_status(browser)
        assert not events(logs, "session_revoked")
        assert "AADSTS50196" in events(logs, "revalidation_unavailable")[0]["detail"]


class TestClassify:
    @pytest.mark.parametrize(("body", "status", "kind"), [
        ({"error": "invalid_grant", "error_codes": [50173]}, 400, "user"),
        ({"error": "interaction_required", "error_codes": [70043]}, 400, "user"),
        ({"error": "invalid_grant", "error_codes": [65001]}, 400, "user"),
        ({"error": "invalid_request", "error_codes": [90014]}, 400, "user"),
        ({"error": "unauthorized_client", "error_codes": [7000112]}, 400, "application"),
        ({"error": "unauthorized_client"}, 400, "application"),
        ({"error": "invalid_client", "error_codes": [7000222]}, 401, "credential"),
        ({"error": "invalid_client"}, 401, "credential"),
        ({"error": "invalid_request", "error_codes": [9002326]}, 400, "credential"),
        ({"error": "temporarily_unavailable"}, 400, "unavailable"),
        ({"error": "invalid_grant", "error_codes": [50196]}, 400, "unavailable"),
        ({"error": "server_error"}, 500, "unavailable"),
        ({"error": "server_error"}, 400, "unavailable"),
        ({"error": "invalid_grant"}, 429, "unavailable"),
        ({"error": "invalid_grant", "error_codes": ["x", True, -1, 10**12]}, 400, "user"),
    ])
    def test_class_by_error_and_codes(self, body: dict[str, Any], status: int,
                                      kind: str) -> None:
        """Each answer's class comes from error, error_codes and the HTTP status only."""
        assert kind == classify(body, status).kind

    def test_the_error_value_is_bounded_and_printable(self) -> None:
        """A hostile error value reaches the logs at most 64 printable characters long."""
        verdict = classify({"error": "invalid_grant\r\nforged=1" + "x" * 500}, 400)
        assert "invalid_grantforged=1" == verdict.error[:21] and len(verdict.error) <= 64
