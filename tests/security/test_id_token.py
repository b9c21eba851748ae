"""The ID token attack matrix through the real flow: the provider misbehaves, the agent refuses.

Every refusal: the expected status, an error page that says what to do, no session, and one
``sso_login_refused`` audit event with the reason code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agent.devidp import DELETE
from agent.web import keys
from tests.harness import CLIENT, TENANT, Stack, StackFactory, free_port
from tests.security.conftest import Outcome, attempt

OTHER_APP = "11111111-2222-4333-8444-555555555555"


def assert_refused(outcome: Outcome, status: int, reason: str) -> None:
    assert (status, [reason]) == (outcome.status, outcome.refused_reasons), outcome.text
    assert "What to do:" in outcome.text
    assert not outcome.has_session
    assert "__Host-sensor_session" not in outcome.headers.get("Set-Cookie", "")


def claims(stack: Stack, **changes: object) -> None:
    stack.idp.token_tweaks.claims = changes


class TestSignature:
    async def test_invalid_signature(self, stack: Stack) -> None:
        """A token whose RS256 signature does not verify is rejected."""
        stack.idp.token_tweaks.signing = "bad_signature"
        assert_refused(await attempt(stack), 400, "id_token_bad_signature")

    async def test_alg_none(self, stack: Stack) -> None:
        """An unsigned token (alg none) is rejected."""
        stack.idp.token_tweaks.signing = "alg_none"
        assert_refused(await attempt(stack), 400, "id_token_bad_algorithm")

    async def test_hs256_with_the_public_key_as_secret(self, stack: Stack) -> None:
        """Algorithm confusion: HS256 keyed with the tenant's public key is rejected."""
        stack.idp.token_tweaks.signing = "hs256_public_key"
        assert_refused(await attempt(stack), 400, "id_token_bad_algorithm")

    async def test_unknown_kid_not_in_the_refetched_jwks(self, stack: Stack) -> None:
        """A kid the tenant never published: one JWKS refetch, then rejected."""
        stack.idp.token_tweaks.signing = "foreign_key"
        before = stack.idp.requests["jwks"]
        assert_refused(await attempt(stack), 400, "id_token_unknown_key")
        assert 1 == stack.idp.requests["jwks"] - before

    async def test_unknown_kid_refetch_is_rate_limited(self, stack: Stack) -> None:
        """A second forged kid right after the first does not make the agent refetch again."""
        stack.idp.token_tweaks.signing = "foreign_key"
        await attempt(stack)
        before = stack.idp.requests["jwks"]
        assert_refused(await attempt(stack), 400, "id_token_unknown_key")
        assert 0 == stack.idp.requests["jwks"] - before

    async def test_no_kid_with_several_keys(self, new_stack: StackFactory) -> None:
        """Without a kid the agent will not guess among several published keys."""
        stack = await new_stack(start=False)
        stack.idp.rotate_keys(keep_old=True)
        await stack.start_agent()
        stack.idp.token_tweaks.header = {"kid": DELETE}
        assert_refused(await attempt(stack), 400, "id_token_unknown_key")

    async def test_kid_of_wrong_type(self, stack: Stack) -> None:
        """A non-string kid is a malformed token, not a crash."""
        stack.idp.token_tweaks.header = {"kid": ["a", "b"]}
        assert_refused(await attempt(stack), 400, "id_token_malformed")


class KeyServer:
    """A server that counts requests: the agent must never fetch keys from a token's header."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/keys"

    async def start(self) -> None:
        async def keys_handler(request: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response({"keys": []})

        app = web.Application()
        app.router.add_get("/keys", keys_handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    server = KeyServer()
    await server.start()
    yield server
    await server.stop()


class TestKeyLocationHeaders:
    @pytest.mark.parametrize("header", ["jku", "x5u"])
    async def test_url_header_is_refused_and_never_followed(
            self, stack: Stack, key_server: KeyServer, header: str) -> None:
        """A jku/x5u header pointing elsewhere: rejected, and the URL is never fetched."""
        stack.idp.token_tweaks.header = {header: key_server.url}
        assert_refused(await attempt(stack), 400, "id_token_foreign_key_reference")
        assert 0 == key_server.hits

    async def test_embedded_jwk_is_refused(self, stack: Stack) -> None:
        """A token carrying its own (attacker's) public key in a jwk header is rejected."""
        stack.idp.token_tweaks.signing = "foreign_key"
        foreign = stack.idp.foreign_key.jwk("https://attacker.example")
        stack.idp.token_tweaks.header = {"jwk": foreign}
        assert_refused(await attempt(stack), 400, "id_token_foreign_key_reference")


class TestIssuer:
    async def test_other_issuer(self, stack: Stack) -> None:
        """An iss of another issuer is rejected."""
        claims(stack, iss="https://login.microsoftonline.com/"
                          "9188040d-6c67-4c5b-b112-36a304b66dad/v2.0")
        assert_refused(await attempt(stack), 400, "id_token_wrong_issuer")

    async def test_trailing_slash(self, stack: Stack) -> None:
        """iss equal but for a trailing slash is a different issuer."""
        claims(stack, iss=stack.idp.issuer + "/")
        assert_refused(await attempt(stack), 400, "id_token_wrong_issuer")

    async def test_different_case(self, stack: Stack) -> None:
        """iss equal but for letter case is a different issuer."""
        claims(stack, iss=stack.idp.issuer.replace(TENANT, TENANT.upper()))
        assert_refused(await attempt(stack), 400, "id_token_wrong_issuer")

    async def test_missing(self, stack: Stack) -> None:
        """A token without iss is rejected."""
        claims(stack, iss=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_missing_claim")


class TestAudience:
    async def test_wrong_audience(self, stack: Stack) -> None:
        """A token for another application is rejected."""
        claims(stack, aud=OTHER_APP)
        assert_refused(await attempt(stack), 400, "id_token_wrong_audience")

    async def test_missing_audience(self, stack: Stack) -> None:
        """A token without aud is rejected."""
        claims(stack, aud=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_missing_claim")

    async def test_several_audiences_without_azp(self, stack: Stack) -> None:
        """Several audiences and no azp: rejected."""
        claims(stack, aud=[CLIENT, OTHER_APP])
        assert_refused(await attempt(stack), 400, "id_token_wrong_audience")

    async def test_several_audiences_with_foreign_azp(self, stack: Stack) -> None:
        """Several audiences with azp naming another application: rejected."""
        claims(stack, aud=[CLIENT, OTHER_APP], azp=OTHER_APP)
        assert_refused(await attempt(stack), 400, "id_token_wrong_audience")

    async def test_several_audiences_with_our_azp_accepted(self, stack: Stack) -> None:
        """Several audiences with azp = our client id are fine (OIDC Core 3.1.3.7)."""
        claims(stack, aud=[CLIENT, OTHER_APP], azp=CLIENT)
        outcome = await attempt(stack)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text


class TestTenant:
    async def test_other_tenant(self, stack: Stack) -> None:
        """A tid of another tenant is a genuine identity from elsewhere: 403."""
        claims(stack, tid="9188040d-6c67-4c5b-b112-36a304b66dad")
        outcome = await attempt(stack)
        assert_refused(outcome, 403, "wrong_tenant")
        assert "another organization" in outcome.text

    async def test_missing_tid(self, stack: Stack) -> None:
        """A token without tid is rejected."""
        claims(stack, tid=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_missing_claim")


class TestTimes:
    def skew(self, stack: Stack) -> int:
        return int(stack.settings.entra.clock_skew)

    async def test_expired_past_leeway(self, stack: Stack) -> None:
        """exp further in the past than the clock-skew leeway: rejected."""
        now = int(stack.clock())
        claims(stack, exp=now - self.skew(stack) - 5, iat=now - 3600, nbf=now - 3600)
        assert_refused(await attempt(stack), 400, "id_token_expired")

    async def test_expired_within_leeway_accepted(self, stack: Stack) -> None:
        """exp just past but within the leeway is still accepted (clock skew)."""
        now = int(stack.clock())
        claims(stack, exp=now - self.skew(stack) + 30, iat=now - 3600, nbf=now - 3600)
        outcome = await attempt(stack)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text

    async def test_not_before_in_the_future(self, stack: Stack) -> None:
        """nbf beyond the leeway in the future: rejected."""
        claims(stack, nbf=int(stack.clock()) + self.skew(stack) + 60)
        assert_refused(await attempt(stack), 400, "id_token_not_yet_valid")

    async def test_iat_missing(self, stack: Stack) -> None:
        """A token without iat is rejected."""
        claims(stack, iat=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_missing_claim")

    async def test_iat_far_in_the_future(self, stack: Stack) -> None:
        """A token issued a day from now is rejected."""
        now = int(stack.clock())
        claims(stack, iat=now + 86400, exp=now + 90000)
        assert_refused(await attempt(stack), 400, "id_token_not_yet_valid")

    async def test_exp_not_a_number(self, stack: Stack) -> None:
        """exp as a string is a malformed token."""
        claims(stack, exp="tomorrow")
        assert_refused(await attempt(stack), 400, "id_token_malformed")


class TestNonceAndSubject:
    async def test_nonce_missing(self, stack: Stack) -> None:
        """A token without nonce is rejected."""
        claims(stack, nonce=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_nonce_mismatch")

    async def test_nonce_different(self, stack: Stack) -> None:
        """A token from another sign-in (other nonce) is rejected."""
        claims(stack, nonce="0" * 64)
        assert_refused(await attempt(stack), 400, "id_token_nonce_mismatch")

    async def test_sub_missing(self, stack: Stack) -> None:
        """A token without sub is rejected (MSAL's KeyError never becomes a 500)."""
        claims(stack, sub=DELETE)
        assert_refused(await attempt(stack), 400, "id_token_missing_claim")


class TestAcceptedKeys:
    async def test_key_rotation_one_refetch(self, stack: Stack) -> None:
        """The tenant rolls its key without notice: one JWKS refetch, then accepted."""
        await attempt(stack)
        stack.idp.rotate_keys()
        before = stack.idp.requests["jwks"]
        outcome = await attempt(stack)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text
        assert 1 == stack.idp.requests["jwks"] - before
        assert stack.app is not None
        assert 1 == stack.app[keys.TENANT].counts.jwks_forced

    async def test_second_rotation_within_the_interval_still_accepted(
            self, stack: Stack) -> None:
        """The rate limit counts from the last forced refetch: a later rotation is picked up."""
        stack.idp.rotate_keys()
        assert 302 == (await attempt(stack)).status
        stack.clock.advance(stack.settings.entra.jwks_refetch_interval + 1)
        stack.idp.rotate_keys()
        outcome = await attempt(stack)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text

    async def test_jwks_without_kids_and_one_key(self, new_stack: StackFactory) -> None:
        """A JWKS without kids and a token without kid: the single key is used."""
        stack = await new_stack(start=False)
        stack.idp.token_tweaks.jwks_without_kid = True
        await stack.start_agent()
        outcome = await attempt(stack)
        assert (302, True) == (outcome.status, outcome.has_session), outcome.text
