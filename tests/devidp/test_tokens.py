"""The token endpoint: code redemption and the ID/access tokens (agent/devidp/tokens.py)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jwt
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from agent.devidp import DELETE, DevIdentityProvider
from tests.clock import Clock
from tests.devidp.helpers import (
    CLIENT,
    GROUP_ADMIN,
    LOGIN_PAGE,
    ORIGIN,
    PASSWORD,
    REDIRECT,
    TENANT,
    USERS,
    CrossOriginSession,
    claims_of,
    header_of,
    initiate,
    jwks_keys,
    msal_app,
    pkce,
    redeem,
    sign_in,
    tokens_for,
    user,
)
from tests.devidp_driver import complete_sign_in


class TestThroughMsal:
    async def test_auth_code_flow_yields_a_verifiable_id_token(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """MSAL's own flow ends in an ID token that verifies against the JWKS, with the
        hashed nonce, the user's claims and client_info."""
        app = await asyncio.to_thread(msal_app, idp)
        flow = initiate(app)
        location = await complete_sign_in(http, flow["auth_uri"], "mfa@contoso.example",
                                          PASSWORD, idp.client_ssl_context())
        auth_response = dict(parse_qsl(urlsplit(location).query))
        assert auth_response["state"] == flow["state"]
        result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow,
                                         auth_response)
        assert "error" not in result, result
        keys = await jwks_keys(idp, http)
        token = result["id_token"]
        claims = jwt.decode(token, keys[header_of(token)["kid"]].key, algorithms=["RS256"],
                            audience=CLIENT, issuer=idp.issuer)
        assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
        assert claims["preferred_username"] == claims["upn"] == "mfa@contoso.example"
        assert claims["tid"] == TENANT and claims["ver"] == "2.0"
        assert claims["groups"] == [GROUP_ADMIN]
        assert claims["exp"] - claims["iat"] == 3600
        assert idp.last_token_origin == ORIGIN
        info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
        assert info == {"uid": claims["oid"], "utid": TENANT}

    async def test_redemption_without_origin_is_refused(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """An SPA code redeemed without an Origin header is AADSTS9002327, as Entra does."""
        app = await asyncio.to_thread(msal_app, idp, None)
        flow = initiate(app)
        location = await complete_sign_in(http, flow["auth_uri"], "adele@contoso.example",
                                          PASSWORD, idp.client_ssl_context())
        result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow,
                                         dict(parse_qsl(urlsplit(location).query)))
        assert result["error"] == "invalid_request" and result["error_codes"] == [9002327]
        assert "may only be redeemed via cross-origin requests" in result["error_description"]


class TestCodeRedemption:
    async def test_wrong_verifier(self, idp: DevIdentityProvider,
                                  http: aiohttp.ClientSession) -> None:
        """A code_verifier that does not match the challenge is AADSTS501481."""
        query, _ = await sign_in(idp, http)
        status, err = await redeem(idp, http, query["code"], pkce()[0])
        assert status == 400 and err["error"] == "invalid_grant"
        assert err["error_codes"] == [501481]

    async def test_other_redirect_uri(self, idp: DevIdentityProvider,
                                      http: aiohttp.ClientSession) -> None:
        """A redirect_uri other than the authorize request's is AADSTS500112."""
        query, verifier = await sign_in(idp, http)
        status, err = await redeem(idp, http, query["code"], verifier, redirect_uri=LOGIN_PAGE)
        assert status == 400 and err["error_codes"] == [500112]

    async def test_entra_shaped_error_body(self, idp: DevIdentityProvider,
                                           http: aiohttp.ClientSession) -> None:
        """Errors carry Entra's description layout, trace and correlation ids."""
        query, verifier = await sign_in(idp, http)
        status, err = await redeem(idp, http, query["code"], verifier, headers={})
        assert status == 400 and err["error_codes"] == [9002327]
        assert err["error_description"].startswith(
            "AADSTS9002327: Tokens issued for the 'Single-Page Application' client-type may "
            "only be redeemed via cross-origin requests.\r\nTrace ID: ")
        assert {"timestamp", "trace_id", "correlation_id"} <= err.keys()

    async def test_code_is_single_use(self, idp: DevIdentityProvider,
                                      http: aiohttp.ClientSession) -> None:
        """Failed attempts do not use the code up; the second redemption is AADSTS54005."""
        query, verifier = await sign_in(idp, http)
        await redeem(idp, http, query["code"], pkce()[0])
        status, body = await redeem(idp, http, query["code"], verifier)
        assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
        status, err = await redeem(idp, http, query["code"], verifier)
        assert status == 400 and err["error_codes"] == [54005]
        assert "already redeemed" in err["error_description"]

    async def test_code_expires_after_ten_minutes(self, idp: DevIdentityProvider,
                                                  http: aiohttp.ClientSession) -> None:
        """A code older than ten minutes by the provider's clock is AADSTS70008."""
        query, verifier = await sign_in(idp, http)
        assert isinstance(idp.clock, Clock)
        idp.clock.advance(601)
        status, err = await redeem(idp, http, query["code"], verifier)
        assert status == 400 and err["error"] == "invalid_grant"
        assert err["error_codes"] == [70008]

    async def test_request_errors(self, idp: DevIdentityProvider,
                                  http: aiohttp.ClientSession) -> None:
        """Unknown client, unknown code, and a secret from a public client are refused."""
        query, verifier = await sign_in(idp, http)
        status, err = await redeem(idp, http, query["code"], verifier, client_id="other")
        assert status == 400 and err["error_codes"] == [700016]
        status, err = await redeem(idp, http, "garbage", verifier)
        assert status == 400 and err["error"] == "invalid_grant"
        status, err = await redeem(idp, http, query["code"], verifier, client_secret="s")
        assert status == 401 and err["error_codes"] == [700025]


class TestTokenContents:
    async def test_access_token_is_for_graph(self, idp: DevIdentityProvider,
                                             http: aiohttp.ClientSession) -> None:
        """The access token's audience is Graph, with the requested scope."""
        access = claims_of((await tokens_for(idp, http))["access_token"])
        assert access["aud"] == "00000003-0000-0000-c000-000000000000"
        assert "User.Read" in access["scp"]

    async def test_user_without_optional_claims(self, idp: DevIdentityProvider,
                                                http: aiohttp.ClientSession) -> None:
        """A user without optional claims gets no names, UPN or groups, but sub and oid."""
        bare = claims_of((await tokens_for(idp, http, "bare"))["id_token"])
        assert not {"given_name", "family_name", "upn", "groups"} & bare.keys()
        assert bare["preferred_username"] == "bare@contoso.example"
        assert bare["sub"] and bare["oid"]

    async def test_group_overage(self, idp: DevIdentityProvider,
                                 http: aiohttp.ClientSession) -> None:
        """Over 200 groups: _claim_names/_claim_sources point at getMemberObjects."""
        many = claims_of((await tokens_for(idp, http, "overage", nonce="abc"))["id_token"])
        assert "groups" not in many and many["_claim_names"] == {"groups": "src1"}
        assert many["_claim_sources"]["src1"]["endpoint"] == (
            f"{idp.graph_url}/v1.0/users/{many['oid']}/getMemberObjects")
        assert many["nonce"] == "abc"

    async def test_no_nonce_asked_none_given(self, idp: DevIdentityProvider,
                                             http: aiohttp.ClientSession) -> None:
        """Without a nonce in the request the ID token carries none."""
        query, verifier = await sign_in(idp, http, nonce=None)
        _, body = await redeem(idp, http, query["code"], verifier)
        assert "nonce" not in claims_of(body["id_token"])


class TestTokenTweaks:
    async def test_claim_and_header_changes(self, idp: DevIdentityProvider,
                                            http: aiohttp.ClientSession) -> None:
        """claims and header are merged into the ID token; DELETE removes an entry."""
        idp.token_tweaks.claims = {"aud": "someone-else", "tid": DELETE, "amr": ["pwd"]}
        idp.token_tweaks.header = {"jku": "https://evil.example/keys", "kid": DELETE}
        token = (await tokens_for(idp, http))["id_token"]
        claims, header = claims_of(token), header_of(token)
        assert claims["aud"] == "someone-else" and "tid" not in claims
        assert claims["amr"] == ["pwd"]
        assert header["jku"] == "https://evil.example/keys" and "kid" not in header

    async def test_reset_makes_tokens_honest(self, idp: DevIdentityProvider,
                                             http: aiohttp.ClientSession) -> None:
        """reset_misbehaviour clears every tweak."""
        idp.token_tweaks.update(claims={"aud": "x"}, signing="alg_none", jwks_without_kid=True)
        idp.reset_misbehaviour()
        token = (await tokens_for(idp, http))["id_token"]
        assert claims_of(token)["aud"] == CLIENT and header_of(token)["alg"] == "RS256"
        assert "kid" in header_of(token)

    def test_unknown_tweaks_are_refused(self, idp: DevIdentityProvider) -> None:
        """A misspelt tweak or an unknown signing mode raises instead of being ignored."""
        with pytest.raises(AttributeError):
            idp.token_tweaks.claimz = {}
        with pytest.raises(ValueError):
            idp.token_tweaks.signing = "whatever"  # type: ignore[assignment]

    @pytest.mark.parametrize("mode", ["bad_signature", "alg_none", "hs256_public_key",
                                      "foreign_key"])
    async def test_signing_modes_defeat_honest_verification(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession, mode: Any) -> None:
        """Each broken signing mode yields a token that honest RS256 verification refuses,
        broken in exactly the named way."""
        honest = (await tokens_for(idp, http))["id_token"]
        keys = await jwks_keys(idp, http)
        key = keys[header_of(honest)["kid"]].key
        jwt.decode(honest, key, algorithms=["RS256"], audience=CLIENT)
        idp.token_tweaks.signing = mode
        token = (await tokens_for(idp, http))["id_token"]
        assert claims_of(token)["aud"] == CLIENT
        with pytest.raises(jwt.PyJWTError):
            jwt.decode(token, key, algorithms=["RS256"], audience=CLIENT)
        signing_input, _, signature = token.rpartition(".")
        header = header_of(token)
        if mode == "alg_none":
            assert header["alg"] == "none" and signature == ""
        elif mode == "hs256_public_key":
            mac = hmac.new(idp.signing_key.public_pem, signing_input.encode(), hashlib.sha256)
            assert header["alg"] == "HS256"
            assert base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode() == signature
        elif mode == "foreign_key":
            assert header["kid"] not in keys
            jwt.decode(token, idp.foreign_key.public_key, algorithms=["RS256"], audience=CLIENT)


def _certificate() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class TestWebPlatform:
    async def test_client_credentials(self, http: aiohttp.ClientSession) -> None:
        """A Web (confidential) client: no Origin, and a right secret or certificate
        assertion (hand-made or MSAL's) redeems; anything else is refused with Entra's code."""
        key_pem, cert_pem = _certificate()
        idp = DevIdentityProvider(TENANT, CLIENT, [REDIRECT], [user(**USERS["plain"])],
                                  spa=False, client_secret="s3cret",
                                  client_certificate_pem=cert_pem)
        async with idp:
            async def code() -> tuple[str, str]:
                query, verifier = await sign_in(idp, http)
                return query["code"], verifier

            c, v = await code()
            status, err = await redeem(idp, http, c, v)  # Origin on a web client
            assert status == 400 and err["error_codes"] == [9002326]
            status, err = await redeem(idp, http, c, v, headers={})
            assert status == 401 and err["error_codes"] == [7000218]
            status, err = await redeem(idp, http, c, v, headers={}, client_secret="wrong")
            assert status == 401 and err["error"] == "invalid_client"
            assert (await redeem(idp, http, c, v, headers={}, client_secret="s3cret"))[0] == 200
            c, v = await code()
            assertion = jwt.encode({"aud": idp.token_endpoint, "iss": CLIENT, "sub": CLIENT,
                                    "exp": int(time.time()) + 600, "jti": "1"}, key_pem,
                                   "RS256")
            bad = jwt.encode({"aud": "https://elsewhere", "iss": CLIENT, "sub": CLIENT,
                              "exp": int(time.time()) + 600}, key_pem, "RS256")
            jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            status, err = await redeem(idp, http, c, v, headers={}, client_assertion=bad,
                                       client_assertion_type=jwt_type)
            assert status == 401 and err["error"] == "invalid_client"
            assert (await redeem(idp, http, c, v, headers={}, client_assertion=assertion,
                                 client_assertion_type=jwt_type))[0] == 200

            def with_msal() -> dict[str, Any]:  # MSAL's own certificate assertion
                app = msal.ConfidentialClientApplication(
                    CLIENT, authority=idp.authority, instance_discovery=False,
                    client_credential={"private_key": key_pem.decode(),
                                       "public_certificate": cert_pem.decode()},
                    http_client=CrossOriginSession(idp.ca_file, None))
                flow = initiate(app)
                location = asyncio.run_coroutine_threadsafe(complete_sign_in(
                    http, flow["auth_uri"], "adele@contoso.example", PASSWORD,
                    idp.client_ssl_context()), loop).result()
                return dict(app.acquire_token_by_auth_code_flow(
                    flow, dict(parse_qsl(urlsplit(location).query))))

            loop = asyncio.get_running_loop()
            result = await asyncio.to_thread(with_msal)
            assert "id_token" in result, result
