"""The edge around every handler: request id, security headers, no stack trace ever.

Deliberately not aiohttp middlewares: a middleware chain costs every request (``/auth/check``
runs on every console request) a few nested coroutines. Instead:

* ``security_headers`` is an ``on_response_prepare`` receiver, so *every* answer — 404s,
  405s, static files and ``/auth/check`` included — carries the headers;
* ``guarded`` wraps each page handler once, at route registration: it binds the request id
  (the pages' reference, on every log line of the request) and turns an unexpected exception
  into a plain error page. ``/auth/check`` is too small to need it (no log line without a
  session to expire, and aiohttp's own 500 carries no stack trace).
"""

from __future__ import annotations

import functools
import secrets
import traceback
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from . import keys
from .frontchannel import FRONTCHANNEL_LOGOUT_PATH
from .pages import plain_error_page

log = structlog.get_logger("agent.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PrepareHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def guarded(handler: Handler) -> Handler:
    """Bind a request id to the request's log lines; never let an exception show a trace."""

    @functools.wraps(handler)
    async def guarded_handler(request: web.Request) -> web.StreamResponse:
        request_id = secrets.token_hex(8)
        request[keys.REQUEST_ID] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence, logged below
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            # The message may echo secrets (MSAL puts state and nonce in its): type and place.
            log.error("internal_error", error_type=type(exc).__name__,
                      where=f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}",
                      path=request.path)
            return plain_error_page(
                request.app[keys.SETTINGS], 500, "Something went wrong",
                "The sign-in service hit an unexpected error.",
                "Try again. If it happens again, tell your sensor administrator the reference "
                "below.", request_id)
        finally:
            structlog.contextvars.clear_contextvars()

    return guarded_handler


# What an answer the application never saw carries (aiohttp's own 400 for a malformed
# request, a 500 outside every handler): the same headers, nothing that could be framed,
# sniffed or cached.
ERROR_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def security_header_set(tls: bool, form_targets: str) -> CIMultiDictProxy[str]:
    """The security headers every answer carries (built once)."""
    fixed = {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; "
            f"form-action 'self' {form_targets}; frame-ancestors 'none'; base-uri 'none'"),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    if tls:
        fixed["Strict-Transport-Security"] = "max-age=31536000"
    return CIMultiDictProxy(CIMultiDict(fixed))


def security_headers(fixed: CIMultiDictProxy[str]) -> PrepareHook:
    """An ``on_response_prepare`` receiver setting the security headers on every answer.

    ``/auth/check``'s yes carries them already (copied from ``fixed`` once per session): the
    very same policy string tells, and the update is skipped."""
    csp = fixed["Content-Security-Policy"]

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        own = headers.get("Content-Security-Policy")
        if own is not csp:
            headers.update(fixed)
            if own is not None and request.path == FRONTCHANNEL_LOGOUT_PATH:
                # Framed by Entra ID's sign-out page: the handler's frame-ancestors stands.
                headers["Content-Security-Policy"] = own
                del headers["X-Frame-Options"]

    return on_prepare
