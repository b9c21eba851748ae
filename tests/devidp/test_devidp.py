"""The dev identity provider, over real HTTPS on loopback, driven by MSAL and by aiohttp."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from agent.devidp import (
    DELETE,
    DEMO_PASSWORD,
    DevIdentityProvider,
    DevUser,
    Fault,
    demo_users,
)
from tests.devidp_driver import SignInDriverError, complete_sign_in, parse_page

TENANT = "72f988bf-0000-4000-8000-000000000001"
CLIENT = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
REDIRECT = "https://sensor-01.plant.example/auth/sso/callback"
LOGIN_PAGE = "https://sensor-01.plant.example/login"
ORIGIN = "https://sensor-01.plant.example"
PASSWORD = "Corr3ct horse!"
GROUP_ADMIN = "0b6f5f37-1111-4a3e-9d58-000000000001"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _user(username: str, **kw: Any) -> DevUser:
    given, family = kw.pop("given_name", "Adele"), kw.pop("family_name", "Vance")
    upn = kw.pop("upn", username)
    return DevUser(username, PASSWORD, given, family, upn, kw.pop("groups", [GROUP_ADMIN]), **kw)


USERS: dict[str, dict[str, Any]] = {
    "plain": dict(username="adele@contoso.example"),
    "mfa": dict(username="mfa@contoso.example", mfa=True),
    "bare": dict(username="bare@contoso.example", optional_claims=False, family_name=None),
    "overage": dict(username="many@contoso.example", overage=True,
                    groups=[f"g{i}" for i in range(250)] + [GROUP_ADMIN]),
}


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[DevIdentityProvider]:
    users = [_user(**spec) for spec in USERS.values()]
    provider = DevIdentityProvider(TENANT, CLIENT, [REDIRECT, LOGIN_PAGE], users,
                                   clock=FakeClock(), state_dir=tmp_path)
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def auth_params(**overrides: str | None) -> tuple[dict[str, str], str]:
    verifier, challenge = pkce()
    params = {"redirect_uri": REDIRECT, "scope": "openid profile User.Read", "state": "st-1",
              "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in params.items() if v is not None}, verifier


async def sign_in(idp: DevIdentityProvider, http: aiohttp.ClientSession, who: str = "plain",
                  **overrides: str | None) -> tuple[dict[str, str], str]:
    username = str(USERS[who]["username"])
    params, verifier = auth_params(**{"login_hint": username, **overrides})
    location = await complete_sign_in(http, idp.authorize_url(**params), username, PASSWORD,
                                      idp.client_ssl_context())
    assert location.startswith(params["redirect_uri"] + "?"), location
    return dict(parse_qsl(urlsplit(location).query)), verifier


async def redeem(idp: DevIdentityProvider, http: aiohttp.ClientSession, code: str,
                 verifier: str, headers: dict[str, str] | None = None, **form: str
                 ) -> tuple[int, dict[str, Any]]:
    data = {"client_id": CLIENT, "grant_type": "authorization_code", "code": code,
            "redirect_uri": REDIRECT, "code_verifier": verifier, **form}
    data = {k: v for k, v in data.items() if v is not None}
    headers = {"Origin": ORIGIN} if headers is None else headers
    async with http.post(idp.token_endpoint, data=data, headers=headers,
                         ssl=idp.client_ssl_context()) as resp:
        return resp.status, await resp.json()


async def get(idp: DevIdentityProvider, http: aiohttp.ClientSession, url: str,
              **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(url, ssl=idp.client_ssl_context(), allow_redirects=False, **kw) as resp:
        text = await resp.text()
        is_json = resp.content_type == "application/json" and text
        body = json.loads(text) if is_json else text
        return resp.status, body, resp


async def jwks_keys(idp: DevIdentityProvider, http: aiohttp.ClientSession) -> dict[str, Any]:
    status, body, _ = await get(idp, http, idp.jwks_uri)
    assert status == 200
    return {k.get("kid"): jwt.PyJWK(k) for k in body["keys"]}


async def tokens_for(idp: DevIdentityProvider, http: aiohttp.ClientSession, who: str = "plain",
                     **overrides: str | None) -> dict[str, Any]:
    query, verifier = await sign_in(idp, http, who, **overrides)
    status, body = await redeem(idp, http, query["code"], verifier)
    assert status == 200, body
    return body


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def header_of(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_header(token))


# ----- discovery, JWKS, TLS --------------------------------------------------------------


async def test_discovery_document_is_entra_shaped(idp: DevIdentityProvider,
                                                  http: aiohttp.ClientSession) -> None:
    status, doc, resp = await get(idp, http, idp.discovery_url)
    assert status == 200
    base = f"{idp.url}/{TENANT}"
    assert doc["issuer"] == idp.issuer == f"{base}/v2.0"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert doc["end_session_endpoint"] == f"{base}/oauth2/v2.0/logout"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "query" in doc["response_modes_supported"]
    assert "authorization_response_iss_parameter_supported" not in doc
    idp.iss_parameter_supported = True
    _, doc, _ = await get(idp, http, idp.discovery_url)
    assert doc["authorization_response_iss_parameter_supported"] is True
    status, err, _ = await get(idp, http, f"{idp.url}/other-tenant/v2.0/.well-known/"
                               "openid-configuration")
    assert status == 400 and err["error_codes"] == [90002]
    assert err["error_description"].startswith("AADSTS90002: Tenant 'other-tenant' not found")
    assert idp.requests["discovery"] == 3


async def test_jwks_and_tls_material(idp: DevIdentityProvider,
                                     http: aiohttp.ClientSession) -> None:
    status, body, _ = await get(idp, http, idp.jwks_uri)
    (key,) = body["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"] == idp.signing_key.kid
    assert {"n", "e", "x5t"} <= key.keys()
    assert jwt.PyJWK(key).key.key_size == 2048
    assert idp.ca_file.read_bytes() == idp.ca_pem
    for host in ("127.0.0.1", "localhost"):  # IP SAN and DNS SAN both verify
        port = urlsplit(idp.url).port
        ctx = idp.client_ssl_context()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname=host)
        writer.close()
        await writer.wait_closed()
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await http.get(idp.jwks_uri)  # the system trust store does not know the throwaway CA


# ----- the whole flow through MSAL ---------------------------------------------------------


class _CrossOriginSession(requests.Session):
    """What the agent hands MSAL: trusts the dev CA, adds Origin to token requests."""

    def __init__(self, ca_file: Path, origin: str | None) -> None:
        super().__init__()
        self._ca, self._origin = str(ca_file), origin

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
                ) -> requests.Response:
        kwargs["verify"] = self._ca
        if str(method).upper() == "POST" and self._origin:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Origin": self._origin}
        return super().request(method, url, *args, **kwargs)


def _msal_app(idp: DevIdentityProvider, origin: str | None = ORIGIN
              ) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        CLIENT, authority=f"{idp.authority_host}/{TENANT}", instance_discovery=False,
        http_client=_CrossOriginSession(idp.ca_file, origin), token_cache=msal.TokenCache())


def _initiate(app: msal.ClientApplication) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "response_mode='form_post'", UserWarning)
        return dict(app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT))


async def test_msal_auth_code_flow_yields_a_verifiable_id_token(
        idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    app = await asyncio.to_thread(_msal_app, idp)
    flow = _initiate(app)
    location = await complete_sign_in(http, flow["auth_uri"], "mfa@contoso.example", PASSWORD,
                                      idp.client_ssl_context())
    auth_response = dict(parse_qsl(urlsplit(location).query))
    assert auth_response["state"] == flow["state"]
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, auth_response)
    assert "error" not in result, result
    keys = await jwks_keys(idp, http)
    token = result["id_token"]
    claims = jwt.decode(token, keys[header_of(token)["kid"]].key, algorithms=["RS256"],
                        audience=CLIENT, issuer=idp.issuer)
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert claims["preferred_username"] == claims["upn"] == "mfa@contoso.example"
    assert claims["tid"] == TENANT and claims["ver"] == "2.0" and claims["groups"] == [GROUP_ADMIN]
    assert claims["exp"] - claims["iat"] == 3600
    assert idp.last_token_origin == ORIGIN
    info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
    assert info == {"uid": claims["oid"], "utid": TENANT}


async def test_msal_redemption_without_origin_is_refused(idp: DevIdentityProvider,
                                                         http: aiohttp.ClientSession) -> None:
    app = await asyncio.to_thread(_msal_app, idp, None)
    flow = _initiate(app)
    location = await complete_sign_in(http, flow["auth_uri"], "adele@contoso.example", PASSWORD,
                                      idp.client_ssl_context())
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow,
                                     dict(parse_qsl(urlsplit(location).query)))
    assert result["error"] == "invalid_request" and result["error_codes"] == [9002327]
    assert "may only be redeemed via cross-origin requests" in result["error_description"]


# ----- authorize and sign-in pages ---------------------------------------------------------


async def test_redirect_uri_mismatch_shows_an_error_page_without_redirect(
        idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    params, _ = auth_params(redirect_uri="https://evil.example/cb")
    status, page, resp = await get(idp, http, idp.authorize_url(**params))
    assert status == 400 and "Location" not in resp.headers
    assert parse_page(page).texts["error-code"] == "AADSTS50011"
    status, page, _ = await get(idp, http, idp.authorize_url(**{**params, "client_id": "nope",
                                                               "redirect_uri": REDIRECT}))
    assert status == 400 and parse_page(page).texts["error-code"] == "AADSTS700016"
    status, page, _ = await get(idp, http, idp.authorize_url(**params).replace(TENANT, "x"))
    assert status == 400 and parse_page(page).texts["error-code"] == "AADSTS90002"


async def test_spa_authorize_requires_s256_pkce(idp: DevIdentityProvider,
                                                http: aiohttp.ClientSession) -> None:
    params, _ = auth_params()
    del params["code_challenge"]
    status, _, resp = await get(idp, http, idp.authorize_url(**params))
    query = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
    assert status == 302 and query["error"] == "invalid_request" and query["state"] == "st-1"
    assert query["error_description"].startswith("AADSTS9002325")


async def test_sign_in_page_is_accessible_and_escapes(idp: DevIdentityProvider,
                                                      http: aiohttp.ClientSession) -> None:
    params, _ = auth_params(login_hint='"><script>alert(1)</script>')
    status, page, resp = await get(idp, http, idp.authorize_url(**params))
    assert status == 200 and "<script" not in page.lower()
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    form = parse_page(page).forms[0]
    assert form.id == "signin-form" and form.action == f"/{TENANT}/login"
    assert form.fields["username"] == '"><script>alert(1)</script>'
    for field in ("username", "password"):
        assert f'<label for="{field}">' in page and f'id="{field}"' in page


async def test_wrong_password_shows_the_form_again(idp: DevIdentityProvider,
                                                   http: aiohttp.ClientSession) -> None:
    params, _ = auth_params()
    with pytest.raises(SignInDriverError, match="account or password is incorrect") as info:
        await complete_sign_in(http, idp.authorize_url(**params), "adele@contoso.example",
                               "wrong", idp.client_ssl_context())
    assert parse_page(info.value.page).forms[0].fields["username"] == "adele@contoso.example"


async def test_mfa_number_matching(idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    params, _ = auth_params()
    status, page, _ = await get(idp, http, idp.authorize_url(**params))
    form = parse_page(page).forms[0]
    async with http.post(f"{idp.url}{form.action}", ssl=idp.client_ssl_context(),
                         data={**form.fields, "username": "mfa@contoso.example",
                               "password": PASSWORD}) as resp:
        mfa_page = await resp.text()
    parsed = parse_page(mfa_page)
    assert "Approve sign-in request" in mfa_page
    assert parsed.texts["mfa-number"].strip().isdigit()
    assert len(parsed.texts["mfa-number"].strip()) == 2
    assert '<label for="number">' in mfa_page
    with pytest.raises(SignInDriverError, match="AADSTS500121") as info:
        await complete_sign_in(http, idp.authorize_url(**params), "mfa@contoso.example",
                               PASSWORD, idp.client_ssl_context(), mfa_number="100")
    assert info.value.status == 400
    query, _ = await sign_in(idp, http, "mfa")  # the right number completes
    assert "code" in query


async def test_sso_cookie_prompt_login_and_logout(idp: DevIdentityProvider,
                                                  http: aiohttp.ClientSession) -> None:
    await sign_in(idp, http)
    params, _ = auth_params()
    status, _, resp = await get(idp, http, idp.authorize_url(**params))
    assert status == 302 and "code=" in resp.headers["Location"]  # SSO: no form
    status, _, _ = await get(idp, http, idp.authorize_url(**params, prompt="login"))
    assert status == 200
    status, _, resp = await get(idp, http, f"{idp.end_session_endpoint}?"
                                f"post_logout_redirect_uri={LOGIN_PAGE}")
    assert status == 302 and resp.headers["Location"] == LOGIN_PAGE
    status, _, _ = await get(idp, http, idp.authorize_url(**params))
    assert status == 200  # signed out: the form again
    status, page, _ = await get(idp, http, f"{idp.end_session_endpoint}?"
                                "post_logout_redirect_uri=https://evil.example/")
    assert status == 200 and "You signed out" in page
    params["prompt"] = "none"
    _, _, resp = await get(idp, http, idp.authorize_url(**params))
    assert "error=login_required" in resp.headers["Location"]


async def test_response_modes(idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    await sign_in(idp, http)
    params, _ = auth_params(response_mode="fragment")
    _, _, resp = await get(idp, http, idp.authorize_url(**params))
    assert resp.headers["Location"].startswith(REDIRECT + "#code=")
    params["response_mode"] = "form_post"
    status, page, _ = await get(idp, http, idp.authorize_url(**params))
    form = parse_page(page).forms[0]
    assert status == 200 and form.action == REDIRECT and form.fields["state"] == "st-1"


# ----- token endpoint ----------------------------------------------------------------------


async def test_code_is_single_use_and_checks_pkce_and_redirect_uri(
        idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    query, verifier = await sign_in(idp, http)
    code = query["code"]
    status, err = await redeem(idp, http, code, pkce()[0])
    assert status == 400 and err["error"] == "invalid_grant" and err["error_codes"] == [501481]
    status, err = await redeem(idp, http, code, verifier, redirect_uri=LOGIN_PAGE)
    assert status == 400 and err["error"] == "invalid_grant" and err["error_codes"] == [500112]
    status, err = await redeem(idp, http, code, verifier, headers={})
    assert status == 400 and err["error_codes"] == [9002327]
    assert err["error_description"].startswith(
        "AADSTS9002327: Tokens issued for the 'Single-Page Application' client-type may only "
        "be redeemed via cross-origin requests.\r\nTrace ID: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= err.keys()
    status, body = await redeem(idp, http, code, verifier)
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    status, err = await redeem(idp, http, code, verifier)
    assert status == 400 and err["error_codes"] == [54005]
    assert "already redeemed" in err["error_description"]


async def test_code_expires_after_ten_minutes(idp: DevIdentityProvider,
                                              http: aiohttp.ClientSession) -> None:
    query, verifier = await sign_in(idp, http)
    idp.clock.now += 601  # type: ignore[attr-defined]
    status, err = await redeem(idp, http, query["code"], verifier)
    assert status == 400 and err["error"] == "invalid_grant" and err["error_codes"] == [70008]


async def test_token_request_errors(idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    query, verifier = await sign_in(idp, http)
    status, err = await redeem(idp, http, query["code"], verifier, client_id="other")
    assert status == 400 and err["error_codes"] == [700016]
    status, err = await redeem(idp, http, "garbage", verifier)
    assert status == 400 and err["error"] == "invalid_grant"
    status, err = await redeem(idp, http, query["code"], verifier, client_secret="s")
    assert status == 401 and err["error_codes"] == [700025]


async def test_id_token_claims_per_user(idp: DevIdentityProvider,
                                        http: aiohttp.ClientSession) -> None:
    access = claims_of((await tokens_for(idp, http))["access_token"])
    assert access["aud"] == "00000003-0000-0000-c000-000000000000" and "User.Read" in access["scp"]
    bare = claims_of((await tokens_for(idp, http, "bare"))["id_token"])
    assert not {"given_name", "family_name", "upn", "groups"} & bare.keys()
    assert bare["preferred_username"] == "bare@contoso.example" and bare["sub"] and bare["oid"]
    many = claims_of((await tokens_for(idp, http, "overage", nonce="abc"))["id_token"])
    assert "groups" not in many and many["_claim_names"] == {"groups": "src1"}
    oid = many["oid"]
    assert many["_claim_sources"]["src1"]["endpoint"] == (
        f"{idp.graph_url}/v1.0/users/{oid}/getMemberObjects")
    assert many["nonce"] == "abc"
    query, verifier = await sign_in(idp, http, nonce=None)
    _, body = await redeem(idp, http, query["code"], verifier)
    assert "nonce" not in claims_of(body["id_token"])


# ----- Graph -------------------------------------------------------------------------------


async def test_graph_me_and_member_groups(idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
    access = (await tokens_for(idp, http, "bare"))["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    me = f"{idp.graph_url}/v1.0/me?$select=givenName,surname,userPrincipalName"
    status, body, _ = await get(idp, http, me, headers=bearer)
    assert status == 200
    assert {k: v for k, v in body.items() if not k.startswith("@")} == {
        "givenName": "Adele", "surname": None, "userPrincipalName": "bare@contoso.example"}
    status, body, resp = await get(idp, http, me)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    id_token = (await tokens_for(idp, http))["id_token"]  # wrong audience
    status, _, _ = await get(idp, http, me, headers={"Authorization": f"Bearer {id_token}"})
    assert status == 401
    status, body, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me?$select=nope",
                                headers=bearer)
    assert status == 400
    url = f"{idp.graph_url}/v1.0/me/checkMemberGroups"
    ssl_ctx = idp.client_ssl_context()
    async with http.post(url, json={"groupIds": [GROUP_ADMIN, "x"]}, headers=bearer,
                         ssl=ssl_ctx) as resp:
        assert resp.status == 200 and (await resp.json())["value"] == [GROUP_ADMIN]
    async with http.post(url, json={"groupIds": [str(i) for i in range(21)]}, headers=bearer,
                         ssl=ssl_ctx) as resp:
        assert resp.status == 400
    async with http.post(url, json={"groupIds": [GROUP_ADMIN]}, ssl=ssl_ctx) as resp:
        assert resp.status == 401
    idp.clock.now += 3600  # type: ignore[attr-defined]
    status, body, _ = await get(idp, http, me, headers=bearer)
    assert status == 401 and "expired" in body["error"]["message"]
    assert idp.requests["graph_me"] == 5 and idp.requests["graph_check_member_groups"] == 3


async def test_graph_get_member_objects_for_overage(idp: DevIdentityProvider,
                                                    http: aiohttp.ClientSession) -> None:
    body = await tokens_for(idp, http, "overage")
    endpoint = claims_of(body["id_token"])["_claim_sources"]["src1"]["endpoint"]
    async with http.post(endpoint, json={"securityEnabledOnly": False},
                         headers={"Authorization": f"Bearer {body['access_token']}"},
                         ssl=idp.client_ssl_context()) as resp:
        assert resp.status == 200 and len((await resp.json())["value"]) == 251


# ----- faults ------------------------------------------------------------------------------


async def test_faults(idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
    idp.faults["discovery"] = Fault(status=500, times=1)
    assert (await get(idp, http, idp.discovery_url))[0] == 500
    assert (await get(idp, http, idp.discovery_url))[0] == 200  # removed itself
    idp.faults["jwks"] = Fault(status=200, body=b"not json{", content_type="text/plain")
    assert (await get(idp, http, idp.jwks_uri))[1] == "not json{"
    idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "1"}, body=b"{}")
    status, _, resp = await get(idp, http, f"{idp.graph_url}/v1.0/me")
    assert status == 429 and resp.headers["Retry-After"] == "1"
    idp.faults["discovery"] = Fault(delay=0.3)
    started = time.monotonic()
    assert (await get(idp, http, idp.discovery_url))[0] == 200
    assert time.monotonic() - started >= 0.3
    query, verifier = await sign_in(idp, http)
    idp.faults["token"] = Fault(status=503, times=1)
    assert (await redeem(idp, http, query["code"], verifier))[0] == 503
    assert (await redeem(idp, http, query["code"], verifier))[0] == 200  # code not consumed
    with pytest.raises(KeyError):
        idp.faults["tokne"] = Fault(status=500)
    idp.reset_misbehaviour()
    assert not idp.faults


async def test_authorize_response_misbehaviour(idp: DevIdentityProvider,
                                               http: aiohttp.ClientSession) -> None:
    idp.authorize_error = ("access_denied", "AADSTS50105: Your administrator has configured "
                           "the application to block users unless they are specifically granted "
                           "access.")
    query, _ = await sign_in(idp, http)
    assert query["error"] == "access_denied" and query["state"] == "st-1"
    assert query["error_description"].startswith("AADSTS50105")
    idp.authorize_error = None
    idp.iss_parameter_supported = True
    query, _ = await sign_in(idp, http)
    assert query["iss"] == idp.issuer and "code" in query
    idp.iss_override = "https://evil.example/tenant/v2.0"
    query, _ = await sign_in(idp, http)
    assert query["iss"] == "https://evil.example/tenant/v2.0"
    idp.faults["authorize_response"] = Fault(status=500, content_type="text/html", times=1)
    params, _ = auth_params()
    status, _, _ = await get(idp, http, idp.authorize_url(**params))
    assert status == 500


# ----- token tweaks and keys -------------------------------------------------------------


async def test_claim_and_header_tweaks(idp: DevIdentityProvider,
                                       http: aiohttp.ClientSession) -> None:
    idp.token_tweaks.claims = {"aud": "someone-else", "tid": DELETE, "amr": ["pwd"]}
    idp.token_tweaks.header = {"jku": "https://evil.example/keys", "kid": DELETE}
    token = (await tokens_for(idp, http))["id_token"]
    claims, header = claims_of(token), header_of(token)
    assert claims["aud"] == "someone-else" and "tid" not in claims and claims["amr"] == ["pwd"]
    assert header["jku"] == "https://evil.example/keys" and "kid" not in header
    idp.reset_misbehaviour()
    idp.token_tweaks.discovery_issuer = "https://evil.example/v2.0"
    idp.token_tweaks.jwks_without_kid = True
    assert (await get(idp, http, idp.discovery_url))[1]["issuer"] == "https://evil.example/v2.0"
    assert "kid" not in (await get(idp, http, idp.jwks_uri))[1]["keys"][0]
    assert "kid" not in header_of((await tokens_for(idp, http))["id_token"])
    with pytest.raises(AttributeError):
        idp.token_tweaks.claimz = {}  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        idp.token_tweaks.signing = "whatever"


@pytest.mark.parametrize("mode", ["bad_signature", "alg_none", "hs256_public_key",
                                  "foreign_key"])
async def test_signing_tweaks_defeat_honest_verification(
        idp: DevIdentityProvider, http: aiohttp.ClientSession, mode: str) -> None:
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


async def test_rotate_keys_and_unknown_kid_later(idp: DevIdentityProvider,
                                                 http: aiohttp.ClientSession) -> None:
    first = await tokens_for(idp, http)
    old_kid = idp.signing_key.kid
    new = idp.rotate_keys(keep_old=True)
    assert set(await jwks_keys(idp, http)) == {old_kid, new.kid}
    idp.rotate_keys()
    assert set(await jwks_keys(idp, http)) == {idp.signing_key.kid}
    status, _, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me",
                             headers={"Authorization": f"Bearer {first['access_token']}"})
    assert status == 200  # access tokens signed by retired keys stay good
    before = set(await jwks_keys(idp, http))
    idp.token_tweaks.signing = "unknown_kid_in_jwks_later"
    token = (await tokens_for(idp, http))["id_token"]
    kid = header_of(token)["kid"]
    assert kid not in before
    jwt.decode(token, (await jwks_keys(idp, http))[kid].key, algorithms=["RS256"],
               audience=CLIENT)


# ----- web platform (confidential client) ------------------------------------------------


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


async def test_web_platform_client_credentials(tmp_path: Path,
                                               http: aiohttp.ClientSession) -> None:
    key_pem, cert_pem = _certificate()
    idp = DevIdentityProvider(TENANT, CLIENT, [REDIRECT], [_user(**USERS["plain"])], spa=False,
                              client_secret="s3cret", client_certificate_pem=cert_pem)
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
                                "exp": int(time.time()) + 600, "jti": "1"}, key_pem, "RS256")
        bad = jwt.encode({"aud": "https://elsewhere", "iss": CLIENT, "sub": CLIENT,
                          "exp": int(time.time()) + 600}, key_pem, "RS256")
        jwt_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        status, err = await redeem(idp, http, c, v, headers={}, client_assertion=bad,
                                   client_assertion_type=jwt_type)
        assert status == 401 and err["error"] == "invalid_client"
        assert (await redeem(idp, http, c, v, headers={}, client_assertion=assertion,
                             client_assertion_type=jwt_type))[0] == 200

        def with_msal() -> dict[str, Any]:  # MSAL's own certificate assertion is accepted
            app = msal.ConfidentialClientApplication(
                CLIENT, authority=idp.authority, instance_discovery=False,
                client_credential={"private_key": key_pem.decode(),
                                   "public_certificate": cert_pem.decode()},
                http_client=_CrossOriginSession(idp.ca_file, None))
            flow = _initiate(app)
            location = asyncio.run_coroutine_threadsafe(complete_sign_in(
                http, flow["auth_uri"], "adele@contoso.example", PASSWORD,
                idp.client_ssl_context()), loop).result()
            return dict(app.acquire_token_by_auth_code_flow(
                flow, dict(parse_qsl(urlsplit(location).query))))

        loop = asyncio.get_running_loop()
        result = await asyncio.to_thread(with_msal)
        assert "id_token" in result, result


# ----- demo users and lifecycle -----------------------------------------------------------


def test_demo_users_cover_every_role_and_refusal() -> None:
    groups = {"admin": ["a1"], "security_analyst": ["s1"], "read_only": ["r1", "r2"]}
    users = {u.username: u for u in demo_users(groups)}
    assert users["admin@contoso.example"].groups == ["a1"]
    assert users["analyst@contoso.example"].groups == ["s1"]
    assert users["reader@contoso.example"].groups == ["r1", "r2"]
    assert {"a1", "r1"} <= set(users["admin.reader@contoso.example"].groups)
    assert not {"a1", "s1", "r1", "r2"} & set(users["nogroup@contoso.example"].groups)
    assert users["nolastname@contoso.example"].family_name is None
    assert users["graphprofile@contoso.example"].optional_claims is False
    overage = users["overage@contoso.example"]
    assert overage.overage and len(overage.groups) == 250 and "r1" in overage.groups
    assert users["mfa@contoso.example"].mfa and users["mfa@contoso.example"].groups == ["s1"]
    assert users["noupn@contoso.example"].upn is None
    assert all(u.password == DEMO_PASSWORD for u in users.values())
    assert demo_users(groups)[0].oid == users["admin@contoso.example"].oid  # stable ids


async def test_binds_loopback_only_and_stops() -> None:
    idp = DevIdentityProvider(TENANT, CLIENT, [REDIRECT], [])
    with pytest.raises(RuntimeError):
        _ = idp.url
    await idp.start()
    port = int(urlsplit(idp.url).port or 0)
    assert idp.url == idp.authority_host == idp.graph_url == f"https://127.0.0.1:{port}"
    ca_file = idp.ca_file
    assert ca_file.exists()
    await idp.stop()
    assert not ca_file.exists()
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(1)
        sock.connect(("127.0.0.1", port))
    await idp.start(port=port)  # back on the same address, same CA ("the IdP came back")
    try:
        async with aiohttp.ClientSession() as http:
            status, _, _ = await get(idp, http, idp.discovery_url)
        assert status == 200 and idp.ca_file.read_bytes() == idp.ca_pem
    finally:
        await idp.stop()
    assert isinstance(idp.client_ssl_context(), ssl.SSLContext)
