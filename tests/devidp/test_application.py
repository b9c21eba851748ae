"""The app registration's and tenant's policies at the token endpoint (agent/devidp/application.py):
each refusal with Entra's code and an Entra-shaped body, and "Sign out everywhere" as Entra."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from agent.devidp import DevIdentityProvider
from agent.devidp.application import withdraw_consent
from agent.devidp.refresh import sign_out_everywhere
from tests.devidp.helpers import CLIENT, ORIGIN, USERS, tokens_for

ENTRA_FIELDS = {"error", "error_description", "error_codes", "timestamp", "trace_id",
                "correlation_id"}


async def refresh(idp: DevIdentityProvider, http: aiohttp.ClientSession,
                  token: str) -> tuple[int, dict[str, Any]]:
    data = {"client_id": CLIENT, "grant_type": "refresh_token", "refresh_token": token,
            "scope": "openid offline_access User.Read"}
    async with http.post(idp.token_endpoint, data=data, headers={"Origin": ORIGIN},
                         ssl=idp.client_ssl_context()) as resp:
        return resp.status, await resp.json()


def disable(idp: DevIdentityProvider) -> None:
    idp.policies.app_disabled = True


def delete(idp: DevIdentityProvider) -> None:
    idp.policies.app_deleted = True


def no_consent(idp: DevIdentityProvider) -> None:
    withdraw_consent(idp, str(USERS["plain"]["username"]))


def location_block(idp: DevIdentityProvider) -> None:
    idp.policies.blocked_addresses.add("127.0.0.1")


def loop(idp: DevIdentityProvider) -> None:
    idp.policies.loop_limit = (0, 300.0)


class TestRefreshRefusals:
    @pytest.mark.parametrize(("change", "status", "error", "code"), [
        (disable, 400, "unauthorized_client", 7000112),
        (delete, 400, "unauthorized_client", 700016),
        (no_consent, 400, "invalid_grant", 65001),
        (location_block, 400, "invalid_grant", 53003),
        (loop, 400, "invalid_grant", 50196),
    ])
    async def test_each_refusal_is_entra_shaped(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession,
            change: Callable[[DevIdentityProvider], None], status: int, error: str,
            code: int) -> None:
        """The refresh answers the class's OAuth error and AADSTS code in error_codes, with
        every field of Entra's error body; the description starts with the code."""
        body = await tokens_for(idp, http, scope="openid offline_access User.Read")
        assert 200 == (await refresh(idp, http, body["refresh_token"]))[0]
        change(idp)
        got_status, answer = await refresh(idp, http, body["refresh_token"])
        assert (status, error, [code]) == (got_status, answer["error"], answer["error_codes"])
        assert ENTRA_FIELDS <= set(answer)
        assert answer["error_description"].startswith(f"AADSTS{code}: ")

    async def test_consent_withdrawn_says_consent_required(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """AADSTS65001 on refresh carries suberror consent_required, as Entra's does."""
        body = await tokens_for(idp, http, scope="openid offline_access User.Read")
        no_consent(idp)
        _, answer = await refresh(idp, http, body["refresh_token"])
        assert "consent_required" == answer["suberror"]

    async def test_sign_out_everywhere_revokes_without_front_channel(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """revokeSignInSessions: the refresh token answers AADSTS50173 afterwards and the
        provider's SSO session is gone; it is a plain function (no HTTP: no front-channel)."""
        body = await tokens_for(idp, http, scope="openid offline_access User.Read")
        idp.clock.advance(1)  # type: ignore[attr-defined]  # tests' Clock
        sign_out_everywhere(idp, str(USERS["plain"]["username"]))
        status, answer = await refresh(idp, http, body["refresh_token"])
        assert (400, [50173]) == (status, answer["error_codes"])
        assert not idp.sso_sessions
