"""HTTP edge of the local-account sign-in: the form on ``/login`` and
``POST /auth/local/sign-in``. Parse → ``LocalSignIn`` → respond; the rules live in
``agent.local.signin``."""

from __future__ import annotations

from aiohttp import web

from ..local.signin import CSRF_COOKIE, LocalSignInRefused
from ..sessions.store import COOKIE_NAME
from . import keys
from .finish import finish_sign_in
from .pages import LocalForm, login_page
from .peer import client_address

_FIELDS = ("username", "password", "csrf_token", "next")
MESSAGES = {
    "bad_credentials": "The user name or password is not right.",
    "csrf_invalid": "The sign-in form had expired. Enter your user name and password again.",
    "throttled": "Too many failed sign-ins. Wait {wait}, then try again.",
    "busy": "The sensor is busy checking other sign-ins. Wait a second, then try again.",
    "state_unwritable": "The sensor cannot record sessions right now (its disk is full or "
                        "read-only). Tell the sensor's administrator.",
}


def local_form(request: web.Request, next_path: str | None, username: str = "",
               error: str | None = None) -> tuple[LocalForm | None, str | None]:
    """The form when the page offers it now, and the login-CSRF cookie value it needs."""
    local = request.app[keys.LOCAL]
    reason = local.offered()
    if reason is None:
        return None, None
    cookie, token = local.csrf_pair(request.cookies.get(CSRF_COOKIE))
    return LocalForm(reason=reason, csrf_token=token, next_path=next_path,
                     username=username, error=error), cookie


def set_csrf_cookie(response: web.StreamResponse, cookie: str | None) -> None:
    if cookie is not None:
        response.set_cookie(CSRF_COOKIE, cookie, path="/", secure=True, httponly=True,
                            samesite="Strict")


def session_ended(request: web.Request) -> bool:
    """The browser still carries a session cookie whose session is gone (revoked by an
    administrator or re-validation, timed out): the sign-in page says so, and not why."""
    cookie = request.cookies.get(COOKIE_NAME)
    return bool(cookie) and request.app[keys.SESSIONS].get(cookie, touch=False) is None


def not_ready_text(request: web.Request, form: LocalForm | None) -> str | None:
    """What the sign-in page says about SSO being unavailable (None: nothing)."""
    settings = request.app[keys.SETTINGS]
    if settings.sso_off:
        return None
    if not request.app[keys.TENANT].ready:
        if request.app[keys.TENANT].misconfigured:
            return ("the sensor's sign-in is misconfigured (Entra ID does not accept its "
                    "tenant); tell the sensor's administrator")
        return "the sensor cannot reach Entra ID"
    if form is not None and form.reason == "sso_unavailable":
        return "Entra ID did not answer the sensor recently"
    return None


def _seconds(n: int) -> str:
    return f"{n} second{'s' if n != 1 else ''}"


async def _fields(request: web.Request) -> dict[str, str]:
    """The form's fields (single text values); anything unreadable counts as absent."""
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        form = await request.post()
    except (ValueError, LookupError):  # undecodable body or an unknown charset
        return {}
    return {name: value for name in _FIELDS
            if isinstance(value := form.get(name), str) and len(form.getall(name)) == 1}


async def local_sign_in(request: web.Request) -> web.StreamResponse:
    fields = await _fields(request)
    local = request.app[keys.LOCAL]
    settings = request.app[keys.SETTINGS]
    raw_next = fields.get("next")
    next_path = request.app[keys.SIGN_IN].safe_next(raw_next) if raw_next else None
    try:
        done = await local.sign_in(fields, request.cookies.get(CSRF_COOKIE),
                                   client_address(request))
    except LocalSignInRefused as exc:
        # 429: throttled after failed sign-ins, or too many at once
        request.app[keys.METRICS].refused("local", exc.reason, throttled=exc.status == 429)
        message = MESSAGES.get(exc.reason)
        error = message.format(wait=_seconds(exc.retry_after or 1)) if message else None
        form, cookie = local_form(request, next_path, fields.get("username", "")[:64], error)
        response = login_page(settings, next_path, signed_out=False,
                              not_ready=not_ready_text(request, form), local=form,
                              status=exc.status)
        set_csrf_cookie(response, cookie)
        if exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    request.app[keys.METRICS].signed_in("local")
    response = await finish_sign_in(request, done.cookie_id, done.next_path, 303)
    response.del_cookie(CSRF_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response
