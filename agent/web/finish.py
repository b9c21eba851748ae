"""The end of every sign-in, SSO or local: the browser's previous session ends (session
fixation), the new session's cookie is set, the browser goes where it was going.

One function for both routes, so that they cannot drift: the SSO callback answers 302 (a
GET), the local form's POST 303; a previous session whose end cannot be written
(``StateUnwritable``) lives on unreachable and is audited, for both.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from ..errors import StateUnwritable
from ..sessions.store import COOKIE_NAME
from . import keys

audit = structlog.get_logger("agent.audit")


def redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def set_cookie(response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path="/", secure=True, httponly=True, samesite="Lax",
                        max_age=max_age)


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Lax")


async def finish_sign_in(request: web.Request, cookie_id: str, next_path: str,
                         status: int) -> web.Response:
    """End the browser's previous session, set the new one's cookie, redirect to
    ``next_path`` with ``status``."""
    old = request.cookies.get(COOKIE_NAME)
    if old:  # session fixation: whatever session this browser had is over
        try:
            await request.app[keys.SESSIONS].delete(old)
        except StateUnwritable:  # it lives on unreachable (the browser gets the new cookie)
            audit.warning("session_revoke_failed", reason="replaced_by_sign_in",
                          why="session state cannot be written")
    response = redirect(next_path, status)
    set_cookie(response, COOKIE_NAME, cookie_id)
    return response
