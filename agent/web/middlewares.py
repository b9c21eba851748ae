"""Request id, security headers on every answer, and no stack trace ever reaching a browser."""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from . import keys
from .pages import plain_error_page

log = structlog.get_logger("agent.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (the error pages' reference) to every log line of this request."""
    request_id = secrets.token_hex(8)
    request[keys.REQUEST_ID] = request_id
    # No clear before binding: the previous request on this connection cleared on its way out
    # (one copy-and-scan of the context less on every request, /auth/check included).
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        return await handler(request)
    finally:
        structlog.contextvars.clear_contextvars()


def security_headers(tls: bool, form_targets: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    csp = ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
           f"form-action 'self' {form_targets}; frame-ancestors 'none'; base-uri 'none'")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        headers = response.headers
        headers.setdefault("Content-Security-Policy", csp)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        headers.setdefault("Cache-Control", "no-store")
        if tls:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        if isinstance(response, web.HTTPException) and response.status >= 400:
            raise response
        return response

    return middleware


@web.middleware
async def never_a_stack_trace(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence, logged below
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        # The message may echo secrets (MSAL puts state and nonce in its): type and place only.
        log.error("internal_error", error_type=type(exc).__name__,
                  where=f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}",
                  path=request.path)
        return plain_error_page(
            request.app[keys.SETTINGS], 500, "Something went wrong",
            "The sign-in service hit an unexpected error.",
            "Try again. If it happens again, tell your sensor administrator the reference below.",
            request.get(keys.REQUEST_ID, "-"))
