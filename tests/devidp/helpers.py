"""Constants and helpers the provider's tests share: sign in, redeem, fetch, decode."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jwt
import msal
import requests

from agent.devidp import DevIdentityProvider, DevUser
from tests.devidp_driver import complete_sign_in

TENANT = "72f988bf-0000-4000-8000-000000000001"
CLIENT = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
REDIRECT = "https://sensor-01.plant.example/auth/sso/callback"
LOGIN_PAGE = "https://sensor-01.plant.example/login"
ORIGIN = "https://sensor-01.plant.example"
PASSWORD = "Corr3ct horse!"
GROUP_ADMIN = "0b6f5f37-1111-4a3e-9d58-000000000001"

USERS: dict[str, dict[str, Any]] = {
    "plain": dict(username="adele@contoso.example"),
    "mfa": dict(username="mfa@contoso.example", mfa=True),
    "bare": dict(username="bare@contoso.example", optional_claims=False, family_name=None),
    "overage": dict(username="many@contoso.example", overage=True,
                    groups=[f"g{i}" for i in range(250)] + [GROUP_ADMIN]),
}


def user(username: str, **kw: Any) -> DevUser:
    given, family = kw.pop("given_name", "Adele"), kw.pop("family_name", "Vance")
    upn = kw.pop("upn", username)
    return DevUser(username, PASSWORD, given, family, upn, kw.pop("groups", [GROUP_ADMIN]), **kw)


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


class CrossOriginSession(requests.Session):
    """What the agent hands MSAL: trusts the dev CA, adds Origin to token requests."""

    def __init__(self, ca_file: Path, origin: str | None) -> None:
        super().__init__()
        self._ca, self._origin = str(ca_file), origin

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
                ) -> requests.Response:
        kwargs["verify"] = self._ca
        if str(method).upper() == "POST" and self._origin:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Origin": self._origin}
        verb = method.decode() if isinstance(method, bytes) else method
        return super().request(verb, url, *args, **kwargs)


def msal_app(idp: DevIdentityProvider, origin: str | None = ORIGIN
             ) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        CLIENT, authority=f"{idp.authority_host}/{TENANT}", instance_discovery=False,
        http_client=CrossOriginSession(idp.ca_file, origin), token_cache=msal.TokenCache())


def initiate(app: msal.ClientApplication) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "response_mode='form_post'", UserWarning)
        return dict(app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT))
