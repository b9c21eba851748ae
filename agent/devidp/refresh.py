"""Refresh tokens and directory changes of the dev identity provider.

A code redemption whose scope has ``offline_access`` (MSAL always adds it) also returns a
refresh token. ``grant_type=refresh_token`` redeems one as Entra ID does:

* every refresh returns a new refresh token (rotation); the old one stays usable until it
  expires, as Entra's do;
* SPA platform: the refresh token ends 24 h after the sign-in that started the chain, and
  refreshing does not extend that (``invalid_grant``, AADSTS700084); Web: 90 days;
* a disabled user gets ``invalid_grant`` AADSTS50057, a user whose sessions were revoked
  (``revoke_sessions``) AADSTS50173 for every refresh token granted before the revocation,
  except a guest's: "Refresh tokens are not revoked for B2B users in their resource tenant"
  (``refresh-tokens.md``);
* the refreshed ID token has no ``nonce`` and the same ``sid``; groups, app roles and names
  are read from the directory at that moment (``set_groups``, ``assign_app_roles`` and
  ``assign_group_app_roles`` show on the next refresh).

``sign_out_everywhere`` is the user's "Sign out everywhere" (My Account), which is Graph
``revokeSignInSessions``: every refresh token and provider session of the user is revoked, and,
as in Entra, no front-channel logout URL is called: an application learns of it at its next
refresh (AADSTS50173). Only a sign-out at the end-session endpoint in the browser loads the
registered front-channel URL (``signout.py``, ``call_frontchannel``). Entra's refresh-token
table (MicrosoftDocs/entra-docs, ``docs/identity-platform/refresh-tokens.md``): single
sign-out revokes cookies but leaves refresh tokens alive.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from .application import refresh_refusal
from .minting import Fail, directory_user, issue_tokens, token_response
from .state import AuthRequest, IssuedCode, IssuedRefreshToken, ProviderState

SPA_REFRESH_TOKEN_LIFETIME = 86400.0
WEB_REFRESH_TOKEN_LIFETIME = 90 * 86400.0



def attach(state: ProviderState, body: dict[str, Any], issued: IssuedCode) -> None:
    """Add a refresh token to a code redemption's answer when ``offline_access`` was asked."""
    if "offline_access" not in issued.request.scope.split():
        return
    now = state.clock()
    lifetime = SPA_REFRESH_TOKEN_LIFETIME if state.spa else WEB_REFRESH_TOKEN_LIFETIME
    body["refresh_token"] = _issue(state, IssuedRefreshToken(
        oid=issued.oid, client_id=issued.request.client_id, scope=issued.request.scope,
        session_state=issued.session_state, auth_time=issued.auth_time, granted_at=now,
        expires_at=now + lifetime))


def _issue(state: ProviderState, item: IssuedRefreshToken) -> str:
    token = "1.dev-rt." + secrets.token_urlsafe(96)
    state.refresh_tokens[token] = item
    return token


def redeem(state: ProviderState, request: web.Request, form: dict[str, str], client_id: str,
           now: float, fail: Fail) -> web.Response:
    """``grant_type=refresh_token`` after the client authenticated (SPA: Origin; Web: secret)."""
    state.requests["token_refresh"] += 1
    token = form.get("refresh_token")
    if not token:
        return fail(400, "invalid_request", 900144, "The request body must contain the "
                    "following parameter: 'refresh_token'.")
    item = state.refresh_tokens.get(token)
    if item is None or item.client_id != client_id:
        return fail(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or "
                    "invalid.")
    if now >= item.expires_at:
        if state.spa:
            return fail(400, "invalid_grant", 700084, "The refresh token was issued to a "
                        "single page app (SPA), and therefore has a fixed, limited lifetime of "
                        "1.00:00:00, which cannot be extended. It is now expired and a new "
                        "sign in request must be sent by the SPA to the sign in page.")
        return fail(400, "invalid_grant", 70008, "The provided authorization code or refresh "
                    "token has expired due to inactivity.")
    user = directory_user(state, item.oid, fail)
    if isinstance(user, web.Response):
        return user
    if user.disabled:
        return fail(400, "invalid_grant", 50057, "The user account is disabled.")
    if user.home_tenant is None and \
            item.granted_at <= state.sessions_revoked_at.get(user.oid, float("-inf")):
        return fail(400, "invalid_grant", 50173, "The provided grant has expired due to it "
                    "being revoked, a fresh auth token is needed. The user might have changed "
                    "or reset their password.")
    if (refused := refresh_refusal(state, request, user.oid, now)) is not None:
        return refused
    asked = AuthRequest(
        client_id=client_id, redirect_uri="", response_mode="query", scope=item.scope,
        state=None, nonce=None, code_challenge=None, code_challenge_method=None,
        login_hint=None, prompt=None, max_age=None, client_info=True, created=now)
    issued = IssuedCode(asked, user.oid, now, item.auth_time, item.session_state,
                        redeemed=True)
    body = issue_tokens(state, issued, user)
    body["refresh_token"] = _issue(state, replace(item))  # same chain: same expiry
    return token_response(body)


# ----- directory changes ---------------------------------------------------------------------


def disable_user(state: ProviderState, username: str, disabled: bool = True) -> None:
    """Block (or unblock) sign-in: refreshes answer AADSTS50057, sign-ins are refused."""
    user = _user(state, username)
    user.disabled = disabled
    if disabled:
        _drop_sso_sessions(state, user.oid)


def set_groups(state: ProviderState, username: str, groups: list[str]) -> None:
    """The user's (transitive) group membership from now on."""
    _user(state, username).groups = list(groups)


def assign_app_roles(state: ProviderState, username: str, values: list[str]) -> None:
    """The app roles assigned to the user directly from now on (Enterprise applications >
    Users and groups); the next token carries them in ``roles``."""
    unknown = [v for v in values if v not in state.app_roles]
    if unknown:
        raise KeyError(f"no such app role: {', '.join(unknown)}")
    _user(state, username).app_roles = list(values)


def assign_group_app_roles(state: ProviderState, group: str, values: list[str]) -> None:
    """The app roles assigned to a group from now on (its direct members get them)."""
    unknown = [v for v in values if v not in state.app_roles]
    if unknown:
        raise KeyError(f"no such app role: {', '.join(unknown)}")
    if values:
        state.group_app_roles[group] = list(values)
    else:
        state.group_app_roles.pop(group, None)


def revoke_sessions(state: ProviderState, username: str) -> None:
    """Like Graph ``revokeSignInSessions``: every refresh token granted until now is dead."""
    user = _user(state, username)
    state.sessions_revoked_at[user.oid] = state.clock()
    _drop_sso_sessions(state, user.oid)


def sign_out_everywhere(state: ProviderState, username: str) -> None:
    """The user's own "Sign out everywhere": ``revokeSignInSessions``, no front-channel call."""
    revoke_sessions(state, username)


async def call_frontchannel(state: ProviderState, sids: list[str]) -> list[int]:
    if not state.frontchannel_logout_url or not sids:
        return []
    statuses = []
    async with aiohttp.ClientSession() as http:
        for sid in sids:
            url = state.frontchannel_logout_url
            url += ("&" if "?" in url else "?") + urlencode({"sid": sid})
            async with http.get(url, allow_redirects=False) as resp:
                statuses.append(resp.status)
    return statuses


def _drop_sso_sessions(state: ProviderState, oid: str) -> set[str]:
    gone = {cookie: s for cookie, s in state.sso_sessions.items() if s.oid == oid}
    for cookie in gone:
        del state.sso_sessions[cookie]
    return {s.session_state for s in gone.values()}


def _user(state: ProviderState, username: str) -> Any:
    user = state.user_by_username(username)
    if user is None:
        raise KeyError(f"no such user: {username}")
    return user
