"""The authorization endpoint, the sign-in form, number-matching MFA and the redirect back."""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from urllib.parse import urlencode

from aiohttp import web

from .application import authorize_refusal
from .endpoint import bind, endpoint
from .faults import entra_error_body, unknown_client
from .keys import b64url
from .state import AuthRequest, IssuedCode, ProviderState, SsoSession
from .users import DevUser

SSO_COOKIE = "devidp_sso"
_PENDING_LIFETIME = 3600.0
_CODE_MEMORY = 86400.0  # redeemed codes are remembered this long to report replays
_RESPONSE_MODES = ("query", "fragment", "form_post")
_BAD_PASSWORD = (
    "Your account or password is incorrect. If you don't remember your password, reset it now."
)


def routes(state: ProviderState) -> list[web.RouteDef]:
    return [
        *(bind(state, method, "/{tenant}/oauth2/v2.0/authorize", authorize)
          for method in ("GET", "POST")),
        bind(state, "POST", "/{tenant}/login", login),
        bind(state, "POST", "/{tenant}/mfa", mfa),
    ]


def _description(code: int, message: str, now: float) -> str:
    return str(entra_error_body(code, message, "", now)["error_description"])


def _respond(state: ProviderState, req: AuthRequest, params: dict[str, str]) -> web.Response:
    """Send ``params`` to the client's redirect URI in the request's response mode."""
    if state.iss_override is not None:
        params["iss"] = state.iss_override
    elif state.iss_parameter_supported:
        params["iss"] = state.issuer
    if req.response_mode == "form_post":
        return state.render("form_post.html", action=req.redirect_uri, fields=list(params.items()))
    if req.response_mode == "fragment":
        location = f"{req.redirect_uri}#{urlencode(params)}"
    else:
        sep = "&" if "?" in req.redirect_uri else "?"
        location = f"{req.redirect_uri}{sep}{urlencode(params)}"
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _error_redirect(state: ProviderState, req: AuthRequest, error: str, description: str
                    ) -> web.Response:
    params = {"error": error, "error_description": description}
    if req.state is not None:
        params["state"] = req.state
    return _respond(state, req, params)


def _prune(state: ProviderState, now: float) -> None:
    for rid in [r for r, p in state.pending.items() if now - p.created > _PENDING_LIFETIME]:
        del state.pending[rid]
    for code in [c for c, i in state.codes.items() if now - i.issued_at > _CODE_MEMORY]:
        del state.codes[code]


def _missing(state: ProviderState, name: str) -> web.Response:
    return state.error_page(
        900144, f"The request body must contain the following parameter: '{name}'.")


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return params


@endpoint("authorize", tenant="html")
async def authorize(state: ProviderState, request: web.Request) -> web.StreamResponse:
    now = state.clock()
    _prune(state, now)
    p = await _params(request)
    client_id = p.get("client_id", "")
    if not client_id:
        return _missing(state, "client_id")
    if client_id != state.client_id:
        return state.error_page(700016, unknown_client(client_id, state.tenant_id))
    if (refused := authorize_refusal(state)) is not None:
        return refused
    redirect_uri = p.get("redirect_uri", "")
    if not redirect_uri:
        return _missing(state, "redirect_uri")
    if redirect_uri not in state.redirect_uris:
        return state.error_page(50011, (
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{client_id}'. Make sure the "
            "redirect URI sent in the request matches one added to your application in the "
            "Azure portal."))
    response_mode = p.get("response_mode", "query")
    if response_mode not in _RESPONSE_MODES:
        return state.error_page(None, f"The response_mode '{response_mode}' is not supported.")
    max_age = p.get("max_age")
    req = AuthRequest(
        client_id=client_id, redirect_uri=redirect_uri, response_mode=response_mode,
        scope=p.get("scope", ""), state=p.get("state"), nonce=p.get("nonce"),
        code_challenge=p.get("code_challenge"),
        code_challenge_method=p.get("code_challenge_method") or None,
        login_hint=p.get("login_hint"), prompt=p.get("prompt"),
        max_age=int(max_age) if max_age and max_age.isdigit() else None,
        client_info=p.get("client_info") == "1", created=now, claims=p.get("claims"),
    )
    if (refusal := _check_request(state, req, p, now)) is not None:
        return refusal
    session = state.sso_sessions.get(request.cookies.get(SSO_COOKIE, ""))
    if session is not None and _sso_usable(state, req, session, now):
        user = state.user_by_oid(session.oid)
        if user is not None and not user.disabled:
            return await _complete(state, req, user, session.auth_time, session.session_state, None)
    if req.prompt == "none":
        return _error_redirect(state, req, "login_required", _description(
            50058, "A silent sign-in request was sent but no user is signed in.", now))
    request_id = secrets.token_urlsafe(24)
    state.pending[request_id] = req
    return _sign_in_form(state, request_id, req.login_hint or "", None)


def _check_request(state: ProviderState, req: AuthRequest, p: dict[str, str], now: float
                   ) -> web.Response | None:
    response_type = p.get("response_type")
    if not response_type:
        return _error_redirect(state, req, "invalid_request", _description(
            900144, "The request body must contain the following parameter: 'response_type'.",
            now))
    if response_type != "code":
        return _error_redirect(state, req, "unsupported_response_type", _description(
            700054, f"response_type '{response_type}' is not enabled for the application.", now))
    if not req.scope:
        return _error_redirect(state, req, "invalid_request", _description(
            900144, "The request body must contain the following parameter: 'scope'.", now))
    if state.spa and (not req.code_challenge or req.code_challenge_method != "S256"):
        return _error_redirect(state, req, "invalid_request", _description(
            9002325, "Proof Key for Code Exchange (code_challenge with code_challenge_method "
            "'S256') is required for cross-origin authorization code redemption.", now))
    if req.code_challenge and not 43 <= len(req.code_challenge) <= 128:
        return _error_redirect(state, req, "invalid_request", _description(
            501491, "Invalid size of Code_Challenge parameter.", now))
    if req.code_challenge_method not in (None, "S256", "plain"):
        return _error_redirect(state, req, "invalid_request", _description(
            501491, f"Unsupported code_challenge_method '{req.code_challenge_method}'.", now))
    return None


def _sso_usable(state: ProviderState, req: AuthRequest, session: SsoSession, now: float
                ) -> bool:
    if req.prompt in ("login", "select_account"):
        return False
    if req.max_age is not None and now - session.auth_time > req.max_age:
        return False
    if req.login_hint:
        hinted = state.user_by_username(req.login_hint)
        return hinted is not None and hinted.oid == session.oid
    return True


def _sign_in_form(state: ProviderState, request_id: str,
                  username: str, error: str | None) -> web.Response:
    return state.render(
        "signin.html", action=f"/{state.tenant_id}/login", request_id=request_id,
        username=username, error=error, app_name=state.app_name,
    )


@endpoint("login", tenant="html")
async def login(state: ProviderState, request: web.Request) -> web.StreamResponse:
    """POST of the sign-in form: ``request_id``, ``username``, ``password``."""
    form = await request.post()
    request_id, username, password = (str(form.get(k, "")) for k in
                                      ("request_id", "username", "password"))
    req = state.pending.get(request_id)
    if req is None:
        return _expired(state)
    user = state.user_by_username(username)
    if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
        return _sign_in_form(state, request_id, username, _BAD_PASSWORD)
    if user.disabled:
        return state.error_page(50057, "The user account is disabled. The account has been "
                                "disabled by an administrator.")
    now = state.clock()
    if user.mfa:
        req.oid = user.oid
        req.mfa_number = str(10 + secrets.randbelow(90))
        return state.render(
            "mfa.html", action=f"/{state.tenant_id}/mfa", request_id=request_id,
            number=req.mfa_number, username=user.username,
        )
    del state.pending[request_id]
    return await _complete(state, req, user, now, str(uuid.uuid4()), secrets.token_urlsafe(32))


@endpoint("mfa", tenant="html")
async def mfa(state: ProviderState, request: web.Request) -> web.StreamResponse:
    """POST of the number-matching form: ``request_id``, ``number``."""
    form = await request.post()
    request_id, number = str(form.get("request_id", "")), str(form.get("number", "")).strip()
    req = state.pending.get(request_id)
    if req is None or req.oid is None or req.mfa_number is None:
        return _expired(state)
    del state.pending[request_id]
    user = state.user_by_oid(req.oid)
    if user is None or not hmac.compare_digest(number.encode(), req.mfa_number.encode()):
        return state.error_page(
            500121, "Authentication failed during strong authentication request. "
            "The number entered did not match.", status=400, title="Request denied")
    return await _complete(state, req, user, state.clock(), str(uuid.uuid4()),
                           secrets.token_urlsafe(32))


def _expired(state: ProviderState) -> web.Response:
    return state.error_page(
        None, "This sign-in request is unknown or has expired. Go back to the application "
        "and sign in again.", status=400)


async def _complete(state: ProviderState, req: AuthRequest, user: DevUser, auth_time: float,
                    session_state: str, new_cookie: str | None) -> web.StreamResponse:
    """Issue the code (or the configured error) and redirect back to the client."""
    state.requests["authorize_response"] += 1
    faulted = await state.faults.apply("authorize_response")
    if faulted is None:
        faulted = _redirect_back(state, req, user, auth_time, session_state)
    if new_cookie is not None:
        state.sso_sessions[new_cookie] = SsoSession(user.oid, auth_time, session_state)
        faulted.set_cookie(
            SSO_COOKIE, new_cookie, path="/", secure=True, httponly=True, samesite="None")
    return faulted


def _redirect_back(state: ProviderState, req: AuthRequest, user: DevUser, auth_time: float,
                   session_state: str) -> web.Response:
    if state.authorize_error is not None:
        error, description = state.authorize_error
        return _error_redirect(state, req, error, description)
    if state.assignment_required and not state.assigned_app_roles(user):
        return _error_redirect(state, req, "access_denied", _description(50105, (
            f"Your administrator has configured the application {state.app_name} "
            f"('{state.client_id}') to block users unless they are specifically granted "
            f"('assigned') access to the application. The signed in user '{user.username}' is "
            "blocked because they are not a direct member of a group with access, nor had "
            "access directly assigned by an administrator. Please contact your administrator "
            "to assign access to this application."), state.clock()))
    code = secrets.token_urlsafe(64)
    state.codes[code] = IssuedCode(req, user.oid, state.clock(), auth_time, session_state)
    params = {"code": code}
    if req.client_info:
        params["client_info"] = client_info(state, user)
    if req.state is not None:
        params["state"] = req.state
    params["session_state"] = session_state
    return _respond(state, req, params)


def client_info(state: ProviderState, user: DevUser) -> str:
    """``base64url({"uid": oid, "utid": tid})``, as MSAL expects."""
    return b64url(json.dumps({"uid": user.oid, "utid": state.tenant_id}).encode())
