"""``TenantMetadata``: discovery, the JWKS cache and key rotation, against the local provider."""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.devidp import DevIdentityProvider, Fault
from agent.entra.discovery import TenantMetadata
from agent.entra.outbound import Outbound
from agent.errors import IdentityProviderUnavailable, MetadataProblem
from agent.settings import EntraSettings
from tests.clock import Clock


@pytest.fixture
async def tenant(entra: EntraSettings, outbound: Outbound, clock: Clock) -> TenantMetadata:
    loaded = TenantMetadata(entra, outbound, clock)
    await loaded.load()
    return loaded


class TestLoad:
    async def test_ready_with_the_tenants_metadata(self, tenant: TenantMetadata,
                                                   idp: DevIdentityProvider) -> None:
        """After load the metadata is ready and holds the tenant's issuer and endpoints."""
        assert tenant.ready and tenant.not_ready_reason is None
        assert tenant.metadata is not None
        assert (idp.issuer, idp.token_endpoint, idp.jwks_uri) == (
            tenant.metadata.issuer, tenant.metadata.token_endpoint,
            tenant.metadata.jwks_uri)

    async def test_foreign_issuer_is_not_ready(self, entra: EntraSettings, outbound: Outbound,
                                               clock: Clock, idp: DevIdentityProvider) -> None:
        """A discovery document naming another issuer is refused; the reason is kept."""
        idp.token_tweaks.discovery_issuer = "https://evil.example/v2.0"
        tenant = TenantMetadata(entra, outbound, clock)
        with pytest.raises(MetadataProblem):
            await tenant.load()
        assert not tenant.ready
        assert "is not tenant" in str(tenant.not_ready_reason)

    async def test_unreachable_is_not_ready(self, entra: EntraSettings, outbound: Outbound,
                                            clock: Clock, idp: DevIdentityProvider) -> None:
        """Discovery answering 503 leaves the tenant not ready, with a reason."""
        idp.faults["discovery"] = Fault(status=503, body=b"{}")
        tenant = TenantMetadata(entra, outbound, clock)
        with pytest.raises(MetadataProblem):
            await tenant.load()
        assert not tenant.ready
        assert "HTTP 503" in str(tenant.not_ready_reason)


class TestSigningKeys:
    async def test_current_key_without_a_fetch(self, tenant: TenantMetadata,
                                               idp: DevIdentityProvider) -> None:
        """The published key is served from the cache."""
        before = idp.requests["jwks"]
        assert await tenant.signing_key(idp.signing_key.kid) is not None
        assert 0 == idp.requests["jwks"] - before

    async def test_rotation_is_picked_up_with_one_fetch(self, tenant: TenantMetadata,
                                                        idp: DevIdentityProvider) -> None:
        """A kid signed with a key published after the last fetch: one refetch finds it."""
        new = idp.rotate_keys()
        before = idp.requests["jwks"]
        key = await tenant.signing_key(new.kid)
        assert key is not None and key.key_id == new.kid
        assert (1, 1) == (idp.requests["jwks"] - before, tenant.counts.jwks_forced)

    async def test_unknown_kid_refetch_is_rate_limited(
            self, tenant: TenantMetadata, idp: DevIdentityProvider, clock: Clock,
            entra: EntraSettings) -> None:
        """Forged kids force one refetch per jwks_refetch_interval, counted from the last
        forced one."""
        assert await tenant.signing_key("forged-1") is None
        before = idp.requests["jwks"]
        assert await tenant.signing_key("forged-2") is None
        assert 0 == idp.requests["jwks"] - before
        clock.advance(entra.jwks_refetch_interval)
        assert await tenant.signing_key("forged-3") is None
        assert 1 == idp.requests["jwks"] - before

    async def test_genuine_rotation_right_after_a_forged_kid(
            self, tenant: TenantMetadata, idp: DevIdentityProvider, clock: Clock,
            entra: EntraSettings) -> None:
        """Within the interval after a forged kid a new key is not fetched; after it, it is."""
        assert await tenant.signing_key("forged") is None
        new = idp.rotate_keys(keep_old=True)
        assert await tenant.signing_key(new.kid) is None
        clock.advance(entra.jwks_refetch_interval)
        assert await tenant.signing_key(new.kid) is not None

    async def test_no_kid_only_with_a_single_key(self, tenant: TenantMetadata,
                                                 idp: DevIdentityProvider) -> None:
        """Without a kid the one published key is used; among several, none is guessed."""
        assert await tenant.signing_key(None) is not None
        idp.rotate_keys(keep_old=True)
        await tenant.refresh_keys()
        assert await tenant.signing_key(None) is None

    async def test_cached_keys_serve_while_the_jwks_is_down(
            self, tenant: TenantMetadata, idp: DevIdentityProvider) -> None:
        """A failed periodic refresh keeps the cached keys."""
        idp.faults["jwks"] = Fault(status=503, body=b"{}")
        with pytest.raises(IdentityProviderUnavailable):
            await tenant.refresh_keys()
        assert await tenant.signing_key(idp.signing_key.kid) is not None
        assert tenant.ready

    async def test_forced_refetch_failing_is_unavailable(
            self, tenant: TenantMetadata, idp: DevIdentityProvider) -> None:
        """An unknown kid while the JWKS endpoint fails: the sign-in is unavailable (502),
        not refused as forged."""
        idp.faults["jwks"] = Fault(status=503, body=b"{}")
        with pytest.raises(IdentityProviderUnavailable) as caught:
            await tenant.signing_key("new-kid")
        assert "jwks_unreachable" == caught.value.reason


class TestReadiness:
    async def test_wait_ready_returns_once_a_load_succeeds(
            self, entra: EntraSettings, outbound: Outbound, clock: Clock,
            idp: DevIdentityProvider) -> None:
        """A waiter stays waiting through a failed load and wakes at the successful one."""
        tenant = TenantMetadata(entra, outbound, clock)
        waiter = asyncio.create_task(tenant.wait_ready())
        idp.faults["discovery"] = Fault(status=503, body=b"{}")
        with pytest.raises(MetadataProblem):
            await tenant.load()
        await asyncio.sleep(0)
        assert not waiter.done()
        idp.faults.clear()
        await tenant.load()
        await asyncio.wait_for(waiter, 5)
        await asyncio.wait_for(tenant.wait_ready(), 5)  # and at once once ready

    async def test_waits_again_after_the_metadata_is_refused(
            self, tenant: TenantMetadata, idp: DevIdentityProvider) -> None:
        """A tenant that was ready and then loads a foreign issuer is not ready again."""
        idp.token_tweaks.discovery_issuer = "https://evil.example/v2.0"
        with pytest.raises(MetadataProblem):
            await tenant.load()
        waiter = asyncio.create_task(tenant.wait_ready())
        await asyncio.sleep(0)
        assert not waiter.done()
        idp.token_tweaks.discovery_issuer = None
        await tenant.load()
        await asyncio.wait_for(waiter, 5)


class TestSignOutUrl:
    async def test_none_unless_signout_from_entra(self, tenant: TenantMetadata) -> None:
        """Without ``signout_from_entra`` sign-out stays on the sensor."""
        assert tenant.sign_out_url() is None

    async def test_entra_end_session_with_the_way_back(
            self, tenant: TenantMetadata, idp: DevIdentityProvider) -> None:
        """With it: the tenant's end_session_endpoint, back to a sign-in page that does not
        start SSO by itself, or to ``post_logout_redirect_uri`` when set."""
        tenant.settings = dataclasses.replace(tenant.settings, signout_from_entra=True)
        url = tenant.sign_out_url()
        assert url is not None and url.startswith(idp.end_session_endpoint + "?")
        back = parse_qs(urlsplit(url).query)["post_logout_redirect_uri"]
        assert [f"{tenant.settings.origin}/login?signed_out=1"] == back
        tenant.settings = dataclasses.replace(
            tenant.settings, post_logout_redirect_uri="https://sensor.example/bye")
        url = tenant.sign_out_url()
        assert url is not None
        assert ["https://sensor.example/bye"] == parse_qs(
            urlsplit(url).query)["post_logout_redirect_uri"]

    async def test_none_without_an_end_session_endpoint(
            self, entra: EntraSettings, outbound: Outbound, clock: Clock) -> None:
        """Before the discovery document is loaded there is no page to send the browser to."""
        settings = dataclasses.replace(entra, signout_from_entra=True)
        assert TenantMetadata(settings, outbound, clock).sign_out_url() is None

