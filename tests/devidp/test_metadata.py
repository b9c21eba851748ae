"""Discovery and JWKS (agent/devidp/metadata.py), and the provider's signing keys."""

from __future__ import annotations

import aiohttp
import jwt

from agent.devidp import DevIdentityProvider
from tests.devidp.helpers import CLIENT, TENANT, get, header_of, jwks_keys, tokens_for


class TestDiscovery:
    async def test_document_is_entra_shaped(self, idp: DevIdentityProvider,
                                            http: aiohttp.ClientSession) -> None:
        """The v2.0 configuration names the tenant's endpoints as Entra lays them out."""
        status, doc, _ = await get(idp, http, idp.discovery_url)
        assert status == 200
        base = f"{idp.url}/{TENANT}"
        assert doc["issuer"] == idp.issuer == f"{base}/v2.0"
        assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
        assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
        assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
        assert doc["end_session_endpoint"] == f"{base}/oauth2/v2.0/logout"
        assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
        assert "query" in doc["response_modes_supported"]

    async def test_iss_parameter_advertised_only_when_supported(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """authorization_response_iss_parameter_supported follows the provider's setting."""
        assert "authorization_response_iss_parameter_supported" not in (
            await get(idp, http, idp.discovery_url))[1]
        idp.iss_parameter_supported = True
        _, doc, _ = await get(idp, http, idp.discovery_url)
        assert doc["authorization_response_iss_parameter_supported"] is True

    async def test_another_tenant_is_aadsts90002(self, idp: DevIdentityProvider,
                                                  http: aiohttp.ClientSession) -> None:
        """Discovery for a tenant the provider does not hold is Entra's 'tenant not found'."""
        status, err, _ = await get(idp, http, f"{idp.url}/other-tenant/v2.0/.well-known/"
                                   "openid-configuration")
        assert status == 400 and err["error_codes"] == [90002]
        assert err["error_description"].startswith("AADSTS90002: Tenant 'other-tenant' not found")
        assert idp.requests["discovery"] == 1

    async def test_issuer_tweak(self, idp: DevIdentityProvider,
                                http: aiohttp.ClientSession) -> None:
        """token_tweaks.discovery_issuer makes discovery announce another issuer."""
        idp.token_tweaks.discovery_issuer = "https://evil.example/v2.0"
        assert (await get(idp, http, idp.discovery_url))[1]["issuer"] == "https://evil.example/v2.0"


class TestJwks:
    async def test_publishes_the_signing_key(self, idp: DevIdentityProvider,
                                             http: aiohttp.ClientSession) -> None:
        """One RSA-2048 signing key with kid, x5t, n and e, like Entra's keys."""
        status, body, _ = await get(idp, http, idp.jwks_uri)
        (key,) = body["keys"]
        assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"] == idp.signing_key.kid
        assert {"n", "e", "x5t"} <= key.keys()
        assert jwt.PyJWK(key).key.key_size == 2048

    async def test_without_kid_tweak(self, idp: DevIdentityProvider,
                                     http: aiohttp.ClientSession) -> None:
        """token_tweaks.jwks_without_kid drops kid from the keys and from the ID tokens."""
        idp.token_tweaks.jwks_without_kid = True
        assert "kid" not in (await get(idp, http, idp.jwks_uri))[1]["keys"][0]
        assert "kid" not in header_of((await tokens_for(idp, http))["id_token"])


class TestKeyRotation:
    async def test_rotation_with_and_without_the_old_key(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """keep_old publishes both keys; a plain rotation publishes only the new one."""
        old_kid = idp.signing_key.kid
        new = idp.rotate_keys(keep_old=True)
        assert set(await jwks_keys(idp, http)) == {old_kid, new.kid}
        idp.rotate_keys()
        assert set(await jwks_keys(idp, http)) == {idp.signing_key.kid}

    async def test_access_tokens_of_retired_keys_stay_good(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """Graph still accepts an access token signed by a key rotated out of the JWKS."""
        first = await tokens_for(idp, http)
        idp.rotate_keys()
        status, _, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me",
                                 headers={"Authorization": f"Bearer {first['access_token']}"})
        assert status == 200

    async def test_unknown_kid_in_jwks_later(self, idp: DevIdentityProvider,
                                             http: aiohttp.ClientSession) -> None:
        """The tweak signs with a new key that only a refetched JWKS holds."""
        before = set(await jwks_keys(idp, http))
        idp.token_tweaks.signing = "unknown_kid_in_jwks_later"
        token = (await tokens_for(idp, http))["id_token"]
        kid = header_of(token)["kid"]
        assert kid not in before
        jwt.decode(token, (await jwks_keys(idp, http))[kid].key, algorithms=["RS256"],
                   audience=CLIENT)
