"""Minting tokens: the token endpoint's answer for a user (access token for Graph, ID token
with ``token_tweaks`` applied, client_info), shared by both grants (tokens.py, refresh.py)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .authorize import client_info
from .keys import b64url, build_jws, merge
from .state import IssuedCode, ProviderState
from .users import DevUser

Fail = Callable[[int, str, int, str], web.Response]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
_DEFAULT_GRAPH_SCOPES = ("User.Read", "GroupMember.Read.All")


def pairwise_sub(state: ProviderState, oid: str) -> str:
    """An opaque, per-application subject like Entra's ``sub``."""
    return b64url(hashlib.sha256(f"{state.tenant_id}:{state.client_id}:{oid}".encode()).digest())


def _granted_scopes(requested: str) -> tuple[list[str], list[str]]:
    """(Graph scopes for ``scp``, OIDC scopes) from the space-separated request scope."""
    graph: list[str] = []
    oidc: list[str] = []
    for scope in requested.split():
        if scope in OIDC_SCOPES:
            oidc.append(scope)
            continue
        name = scope.rsplit("/", 1)[-1]
        graph.extend(_DEFAULT_GRAPH_SCOPES if name == ".default" else [name])
    return list(dict.fromkeys(graph or ["User.Read"])), oidc


def issue_tokens(state: ProviderState, issued: IssuedCode, user: DevUser) -> dict[str, Any]:
    """The successful token response body."""
    now = int(state.clock())
    graph_scopes, oidc_scopes = _granted_scopes(issued.request.scope)
    access_claims = {
        "aud": GRAPH_APP_ID, "iss": f"{state.url}/{state.tenant_id}/", "iat": now, "nbf": now,
        "exp": now + state.token_lifetime, "appid": state.client_id, "idtyp": "user",
        "name": user.name, "oid": user.oid, "scp": " ".join(graph_scopes),
        "sub": pairwise_sub(state, user.oid), "tid": state.tenant_id,
        "unique_name": user.username, "uti": secrets.token_urlsafe(16), "ver": "1.0",
    }
    if user.upn is not None:
        access_claims["upn"] = user.upn
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(graph_scopes + [s for s in oidc_scopes if s != "offline_access"]),
        "expires_in": state.token_lifetime - 1,
        "ext_expires_in": state.token_lifetime - 1,
        "access_token": build_jws(access_claims, state.signing_key),
    }
    if "openid" in oidc_scopes:
        body["id_token"] = build_id_token(state, issued, user, now)
    body["client_info"] = client_info(state, user)
    return body


def id_token_claims(state: ProviderState, issued: IssuedCode, user: DevUser, now: int
                    ) -> dict[str, Any]:
    """The v2.0 ID token claims before tweaks."""
    claims: dict[str, Any] = {
        "aud": state.client_id, "iss": state.issuer, "iat": now, "nbf": now,
        "exp": now + state.token_lifetime, "name": user.name,
    }
    if issued.request.nonce is not None:
        claims["nonce"] = issued.request.nonce
    claims.update(
        oid=user.oid, preferred_username=user.username, rh="0.dev-state.",
        sid=issued.session_state, sub=pairwise_sub(state, user.oid), tid=state.tenant_id,
        uti=secrets.token_urlsafe(16), ver="2.0",
    )
    if issued.request.max_age is not None:
        claims["auth_time"] = int(issued.auth_time)
    if acrs := requested_acrs(issued.request.claims) & state.auth_contexts:
        claims["acrs"] = sorted(acrs)
    if user.home_tenant is not None:  # a guest: its home tenant authenticated it
        claims["idp"] = f"https://sts.windows.net/{user.home_tenant}/"
    guest_upn = user.home_tenant is None or state.policies.include_externally_authenticated_upn
    if user.optional_claims:
        for claim, value in (("given_name", user.given_name), ("family_name", user.family_name),
                             ("upn", user.upn if guest_upn else None)):
            if value is not None:
                claims[claim] = value
    if roles := state.assigned_app_roles(user):  # never cut short: no overage for roles
        claims["roles"] = roles
    if user.overage:
        claims["_claim_names"] = {"groups": "src1"}
        claims["_claim_sources"] = {
            "src1": {"endpoint": f"{state.graph_url}/v1.0/users/{user.oid}/getMemberObjects"}
        }
    elif user.optional_claims and user.groups:
        claims["groups"] = list(user.groups)
    return claims


def requested_acrs(claims_parameter: str | None) -> set[str]:
    """Auth context ids the ``claims`` parameter asks for in the ID token's ``acrs``."""
    try:
        wanted = json.loads(claims_parameter or "{}").get("id_token", {}).get("acrs", {})
    except (ValueError, AttributeError):
        return set()
    if not isinstance(wanted, dict):
        return set()
    values = wanted.get("values") or ([wanted["value"]] if "value" in wanted else [])
    return {v for v in values if isinstance(v, str)} if isinstance(values, list) else set()


def build_id_token(state: ProviderState, issued: IssuedCode, user: DevUser, now: int) -> str:
    """Sign the ID token, applying ``state.token_tweaks``."""
    tweaks = state.token_tweaks
    claims = merge(id_token_claims(state, issued, user, now), tweaks.claims)
    mode = tweaks.signing
    if mode == "unknown_kid_in_jwks_later":
        state.rotate_keys(keep_old=True)  # a kid the client's cached JWKS cannot know yet
        mode = "normal"
    token = build_jws(
        claims, state.signing_key, mode=mode, header_changes=tweaks.header,
        with_kid=not tweaks.jwks_without_kid,
        foreign_key=state.foreign_key if mode == "foreign_key" else None,
    )
    if tweaks.raw_header is not None:
        token = b64url(tweaks.raw_header) + "." + token.partition(".")[2]
    return token


def token_response(body: dict[str, Any]) -> web.Response:
    """A successful token answer; never cached."""
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def directory_user(state: ProviderState, oid: str, fail: Fail) -> DevUser | web.Response:
    """The user a grant was issued to, or AADSTS50034 when the directory no longer has them."""
    user = state.user_by_oid(oid)
    if user is None:
        return fail(400, "invalid_grant", 50034, "The user account does not exist in the "
                    f"{state.tenant_id} directory.")
    return user
