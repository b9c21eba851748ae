"""The token endpoint: client authentication and code redemption (SPA or web client); the
refresh grant is refresh.py's, the tokens themselves minting.py's."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import application, refresh
from .endpoint import bind, endpoint
from .faults import entra_error, unknown_client
from .keys import b64url
from .minting import directory_user, issue_tokens, token_response
from .state import IssuedCode, ProviderState

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def routes(state: ProviderState) -> list[web.RouteDef]:
    return [bind(state, "POST", "/{tenant}/oauth2/v2.0/token", token)]


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
    except ValueError:
        return None
    return unquote_plus(user), unquote_plus(password)


@endpoint("token")
async def token(state: ProviderState, request: web.Request) -> web.StreamResponse:
    now = state.clock()
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    basic = _basic_credentials(request)
    state.last_token_origin = request.headers.get("Origin")

    def fail(status: int, error: str, code: int, message: str) -> web.Response:
        return entra_error(request, status, error, code, message, now)

    def missing(name: str) -> web.Response:
        return fail(400, "invalid_request", 900144,
                    f"The request body must contain the following parameter: '{name}'.")

    grant_type = form.get("grant_type")
    if not grant_type:
        return missing("grant_type")
    if grant_type not in ("authorization_code", "refresh_token"):
        return fail(400, "unsupported_grant_type", 70003,
                    f"The app requested an unsupported grant type '{grant_type}'.")
    client_id = form.get("client_id") or (basic[0] if basic else "")
    if not client_id:
        return missing("client_id")
    if client_id != state.client_id:
        return fail(400, "unauthorized_client", 700016,
                    unknown_client(client_id, state.tenant_id))
    if (refused := application.client_refusal(state, request, now)) is not None:
        return refused
    if grant_type == "refresh_token":
        if (refused := _authenticate_client(state, request, form, basic, now, fail)) is not None:
            return refused
        return refresh.redeem(state, request, form, client_id, now, fail)
    code = form.get("code")
    if not code:
        return missing("code")
    if (refused := _authenticate_client(state, request, form, basic, now, fail)) is not None:
        return refused
    issued = state.codes.get(code)
    if issued is None or issued.request.client_id != client_id:
        return fail(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or "
                    "invalid.")
    if issued.redeemed:
        return fail(400, "invalid_grant", 54005, "OAuth2 Authorization code was already "
                    "redeemed, please retry with a new valid code or use an existing refresh "
                    "token.")
    if now > issued.issued_at + state.code_lifetime:
        return fail(400, "invalid_grant", 70008, "The provided authorization code or refresh "
                    "token has expired due to inactivity. Send a new interactive authorization "
                    "request for this user and resource.")
    redirect_uri = form.get("redirect_uri", "")
    if redirect_uri != issued.request.redirect_uri:
        return fail(400, "invalid_grant", 500112, (
            f"The reply address '{redirect_uri}' does not match the reply address "
            f"'{issued.request.redirect_uri}' provided when requesting Authorization code."))
    pkce_ok = _pkce_ok(issued, form.get("code_verifier"))
    state.last_token_pkce_ok = pkce_ok
    if not pkce_ok:
        return fail(400, "invalid_grant", 501481, "The Code_Verifier does not match the "
                    "code_challenge supplied in the authorization request.")
    user = directory_user(state, issued.oid, fail)
    if isinstance(user, web.Response):
        return user
    issued.redeemed = True
    body = issue_tokens(state, issued, user)
    refresh.attach(state, body, issued)
    return token_response(body)


def _pkce_ok(issued: IssuedCode, verifier: str | None) -> bool:
    challenge = issued.request.code_challenge
    if not challenge:
        return True
    if not verifier:
        return False
    if issued.request.code_challenge_method == "S256":
        computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def _authenticate_client(state: ProviderState, request: web.Request, form: dict[str, str],
                         basic: tuple[str, str] | None, now: float,
                         fail: Callable[[int, str, int, str], web.Response]
                         ) -> web.Response | None:
    """SPA: cross-origin and no credentials. Web: a secret or a certificate assertion."""
    origin = request.headers.get("Origin")
    secret = form.get("client_secret") or (basic[1] if basic else None)
    assertion = form.get("client_assertion")
    if state.spa:
        if secret or assertion:
            return fail(401, "invalid_client", 700025, "Client is public so neither "
                        "'client_assertion' nor 'client_secret' should be presented.")
        if not origin:
            return fail(400, "invalid_request", 9002327, "Tokens issued for the 'Single-Page "
                        "Application' client-type may only be redeemed via cross-origin "
                        "requests.")
        return None
    if origin:
        return fail(400, "invalid_request", 9002326, "Cross-origin token redemption is "
                    "permitted only for the 'Single-Page Application' client-type. Request "
                    f"origin: '{origin}'.")
    if assertion:
        problem = _assertion_problem(state, form, assertion, now)
        if problem is not None:
            return fail(401, "invalid_client", problem[0], problem[1])
        return None
    if secret:
        if state.client_secret is None or not hmac.compare_digest(
                secret.encode(), state.client_secret.encode()):
            return fail(401, "invalid_client", 7000215, "Invalid client secret provided. "
                        "Ensure the secret being sent in the request is the client secret "
                        f"value, not the client secret ID, for a secret added to app "
                        f"'{state.client_id}'.")
        if state.policies.client_secret_expired:
            return application.secret_expired(state, request, now)
        return None
    return fail(401, "invalid_client", 7000218, "The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.")


def _assertion_problem(state: ProviderState, form: dict[str, str], assertion: str,
                       now: float) -> tuple[int, str] | None:
    if form.get("client_assertion_type") != _ASSERTION_TYPE:
        return 70002, f"client_assertion_type must be '{_ASSERTION_TYPE}'."
    if not state.client_certificate_pem:
        return 700027, "Client assertion failed signature validation (no certificate registered)."
    pem = state.client_certificate_pem
    public_key: Any
    if b"CERTIFICATE" in pem:
        public_key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        public_key = serialization.load_pem_public_key(pem)
    try:
        claims = jwt.decode(
            assertion, public_key, algorithms=["RS256", "PS256"], audience=state.token_endpoint,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["aud", "iss", "sub", "exp"]},
        )
    except jwt.InvalidAudienceError:
        return 70002, ("Client assertion audience must be the token endpoint "
                       f"{state.token_endpoint}.")
    except jwt.PyJWTError as exc:
        return 700027, f"Client assertion failed signature validation. ({exc})"
    if claims.get("iss") != state.client_id or claims.get("sub") != state.client_id:
        return 70002, "Client assertion iss and sub must both be the client id."
    if not isinstance(claims.get("exp"), int | float) or now >= claims["exp"] or (
            isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + 300):
        return 700024, "Client assertion is not within its valid time range."
    return None


