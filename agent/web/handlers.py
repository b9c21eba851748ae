"""HTTP handlers: parse → call the sign-in or session code → respond. Thin on purpose."""

from __future__ import annotations

from urllib.parse import urlencode

import structlog
from aiohttp import web

from ..clientaddr import parse_address
from ..errors import ReasonedError, StateUnwritable
from ..roles import ROLES, allows, role_name
from ..sessions.store import COOKIE_NAME, Session
from ..signin.flow import hint_ok
from ..signin.guests import readable_upn
from . import keys
from .check import session_cookie
from .finish import clear_cookie as _clear_cookie
from .finish import finish_sign_in, redirect
from .finish import set_cookie as _set_cookie
from .frontchannel import SIGNED_OUT_COOKIE, SIGNED_OUT_MAX_AGE
from .host import elsewhere
from .local import local_form, not_ready_text, session_ended, set_csrf_cookie
from .pages import error_page, login_page, plain_error_page, render, role_refused_page
from .peer import client_address
from .refusal_pages import REFUSAL_PAGES
from .refusals import SIGN_IN_PAGE, page_reference

audit = structlog.get_logger("agent.audit")

BINDING_COOKIE = "__Host-sso_signin"


def current_session(request: web.Request, touch: bool = True) -> Session | None:
    return request.app[keys.SESSIONS].get(session_cookie(request), touch=touch)


def _to_sign_in(request: web.Request) -> web.Response:
    """No session on a console page: to the sign-in page, coming back here afterwards."""
    return redirect("/login?" + urlencode({"next": request.path_qs}))


def _reference(request: web.Request) -> str:
    return str(request.get(keys.REQUEST_ID, "-"))


def _from_trusted_proxy(request: web.Request) -> bool:
    peer = parse_address(request.remote or "")
    return peer is not None and request.app[keys.PROXY_TRUST].trusts(peer)


def _on_another_host(request: web.Request) -> web.Response | None:
    """To redirect_uri's scheme and host first, keeping path and query (see host.py)."""
    target = elsewhere(request, request.app[keys.SETTINGS], _from_trusted_proxy(request))
    return None if target is None else redirect(target)


async def login(request: web.Request) -> web.Response:
    if (moved := _on_another_host(request)) is not None:
        return moved
    sign_in = request.app[keys.SIGN_IN]
    request.app[keys.MSAL_WARM_UP].prepare()  # in the background: a sign-in is likely
    raw_next = request.query.get("next")
    next_path = sign_in.safe_next(raw_next) if raw_next else None
    settings = request.app[keys.SETTINGS]
    hint = request.query.get("login_hint")
    form, csrf_cookie = local_form(request, next_path)
    response = login_page(settings, next_path, signed_out="signed_out" in request.query,
                          not_ready=not_ready_text(request, form), local=form,
                          login_hint=hint if hint_ok(hint) else None, ended=session_ended(request))
    set_csrf_cookie(response, csrf_cookie)
    return response


async def sso_start(request: web.Request) -> web.StreamResponse:
    if (moved := _on_another_host(request)) is not None:
        return moved
    sign_in = request.app[keys.SIGN_IN]
    try:
        started = await sign_in.start(request.query.get("next"), client_address(request),
                                      request.cookies.get(BINDING_COOKIE),
                                      login_hint=request.query.get("login_hint"),
                                      after_sign_out=SIGNED_OUT_COOKIE in request.cookies)
    except ReasonedError as exc:
        request.app[keys.METRICS].refused("sso", exc.reason, throttled=exc.status == 429)
        return error_page(exc, request.app[keys.SETTINGS], _reference(request), "/login")
    response = redirect(started.authorize_url)
    _set_cookie(response, BINDING_COOKIE, started.binding,
                max_age=int(request.app[keys.SETTINGS].session.sign_in_timeout))
    return response


async def sso_callback(request: web.Request) -> web.StreamResponse:
    sign_in = request.app[keys.SIGN_IN]
    settings = request.app[keys.SETTINGS]
    client = client_address(request)
    try:
        done = await sign_in.complete(request.query, request.cookies.get(BINDING_COOKIE), client)
    except ReasonedError as exc:  # shown at a clean address: the code stays out of history
        request.app[keys.METRICS].refused("sso", exc.reason)
        return request.app[REFUSAL_PAGES].redirect(error_page(exc, settings, _reference(request)))
    request.app[keys.METRICS].signed_in("sso")
    response = await finish_sign_in(request, done.cookie_id, done.next_path, 302)
    _clear_cookie(response, BINDING_COOKIE)
    if SIGNED_OUT_COOKIE in request.cookies:
        _clear_cookie(response, SIGNED_OUT_COOKIE)
    return response


async def role_refused(request: web.Request) -> web.StreamResponse:
    """The page nginx shows for a 403 from ``/auth/check``: this page needs a higher role."""
    session = current_session(request, touch=False)
    if session is None:
        return redirect(SIGN_IN_PAGE)
    needed = request.query.get("needed", "")
    settings = request.app[keys.SETTINGS]
    return role_refused_page(settings, role_name(session.role),
                             role_name(needed) if needed in ROLES else "more privileged",
                             page_reference(request.query.get("ref", ""), _reference(request)))


async def me(request: web.Request) -> web.Response:
    session = current_session(request)
    if session is None:
        return web.json_response({"error": "not signed in"}, status=401)
    return web.json_response({
        "upn": session.upn, "given_name": session.given_name,
        "family_name": session.family_name, "role": session.role,
        "role_name": role_name(session.role), "groups": list(session.groups),
        "auth_time": session.auth_time,
        "expires_at": request.app[keys.SESSIONS].expires_at(session),
        "csrf_token": request.app[keys.SESSIONS].csrf_token(session), "method": session.method,
    })


async def logout(request: web.Request) -> web.StreamResponse:
    session = current_session(request, touch=False)
    if session is None:
        response: web.StreamResponse = redirect("/login", 303)
        if COOKIE_NAME in request.cookies:  # a stale id: forget it. No cookie at all may be
            _clear_cookie(response, COOKIE_NAME)  # a cross-site POST (Lax): touch nothing
        return response
    who = {"upn": session.upn, "source_ip": client_address(request)}  # for the audit lines
    supplied = request.headers.get("X-CSRF-Token")
    if supplied is None and request.content_type in ("application/x-www-form-urlencoded",
                                                     "multipart/form-data"):
        try:
            value = (await request.post()).get("csrf_token")
        except (ValueError, LookupError, AssertionError):  # 0xff bytes, unknown charset,
            value = None  # multipart without a boundary: no token, so refused below
        supplied = value if isinstance(value, str) else None
    if not request.app[keys.SESSIONS].csrf_ok(session, supplied):
        audit.warning("sso_logout_refused", reason="csrf_token_invalid", **who)
        return web.Response(status=403, text="Sign-out needs the session's CSRF token.\n")
    try:
        await request.app[keys.SESSIONS].delete(request.cookies[COOKIE_NAME])
    except StateUnwritable:
        # Never "signed out" in memory only: a restart would bring the session back.
        audit.error("sso_logout_refused", reason="state_unwritable", **who)
        return plain_error_page(
            request.app[keys.SETTINGS], 503, "Sign-out could not be recorded",
            "The sensor cannot write its session state (its disk is full or read-only), so "
            "your session could not be ended and is still signed in.",
            "Try signing out again in a minute. If it keeps failing, tell the sensor's "
            "administrator that the agent's state directory cannot be written; closing the "
            "browser ends the session after the idle timeout.", _reference(request))
    audit.info("sso_logout", role=session.role, method=session.method, **who)
    target = "/login?signed_out=1"
    if session.method == "sso":
        target = request.app[keys.TENANT].sign_out_url() or target
    response = redirect(target, 303)
    _clear_cookie(response, COOKIE_NAME)
    _set_cookie(response, SIGNED_OUT_COOKIE, "1", max_age=SIGNED_OUT_MAX_AGE)
    return response


async def overview(request: web.Request) -> web.StreamResponse:
    """The demo's console stand-in: who is signed in, and a sign-out button."""
    session = current_session(request)
    if session is None:
        return _to_sign_in(request)
    settings = request.app[keys.SETTINGS]
    return render("overview.html", title="Overview", sensor_name=settings.server.sensor_name,
                  name=f"{session.given_name} {session.family_name}", upn=readable_upn(session.upn),
                  role_name=role_name(session.role),
                  csrf_token=request.app[keys.SESSIONS].csrf_token(session),
                  method=session.method)


async def admin_page(request: web.Request) -> web.StreamResponse:
    """The demo console's admin-only page: the same rank check as ``/auth/check?role=admin``."""
    session = current_session(request)
    if session is None:
        return _to_sign_in(request)
    settings = request.app[keys.SETTINGS]
    if not allows(session.role, "admin"):
        audit.warning("console_access_refused", upn=session.upn, role=session.role,
                      needed="admin", path=request.path)
        return role_refused_page(settings, role_name(session.role), role_name("admin"),
                                 _reference(request))
    return render("admin.html", title="Administration", sensor_name=settings.server.sensor_name,
                  name=f"{session.given_name} {session.family_name}",
                  role_name=role_name(session.role))
