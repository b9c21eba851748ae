"""``/auth/check``: the question nginx asks before every console request. The hot path.

Answers from memory only (the session's headers are built once per session and role, and
kept here: ``keys.CHECK_HEADERS``, not in the session):
200 with who and which role, 401 with where to sign in, 403 when the role ranks below
``?role=``, 400 for a role that does not exist. Never awaits. With ``[metrics] listen`` set,
``timed_auth_check`` also counts each answer and the time it took.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from ..metrics.tally import AuthCheckTimes
from ..roles import ROLES, allows
from ..sessions.store import COOKIE_NAME, Session
from . import keys
from .peer import client_address
from .refusals import sign_in_location

Handler = Callable[[web.Request], Awaitable[web.Response]]

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def session_cookie(request: web.Request) -> str | None:
    """The session cookie's value, as ``request.cookies`` gives it, without building a Morsel
    for every cookie of the header (a tenth of /auth/check's own Python time). Anything but
    plain ``name=value`` pairs with a base64url value (quotes, escapes, spaces) goes through
    aiohttp's full parser, so both always agree."""
    header = request.headers.get("Cookie", "")
    if '"' in header or "\\" in header:
        return request.cookies.get(COOKIE_NAME)
    found = None
    for part in header.split(";"):
        name, equals, value = part.partition("=")
        if name.strip() == COOKIE_NAME:
            found = value.strip()
            if not equals or not _BASE64URL.fullmatch(found):
                return request.cookies.get(COOKIE_NAME)
    return found  # the last one wins, as in request.cookies


async def auth_check(request: web.Request) -> web.Response:
    return check(request)


def timed_auth_check(times: AuthCheckTimes) -> Handler:
    """``auth_check`` that also counts its answer and the time it took (``[metrics] listen``
    set): two clock reads, one ``bisect`` and three additions, inline (a method call would
    cost a third more), no await, no lock."""
    clock, bounds, buckets, statuses = time.perf_counter, times.bounds, times.buckets, \
        times.statuses

    async def auth_check(request: web.Request) -> web.Response:
        start = clock()
        response = check(request)
        took = clock() - start
        buckets[bisect_left(bounds, took)] += 1  # le: a bound counts as inside its bucket
        statuses[response.status] += 1
        times.sum += took
        return response

    return auth_check


def check(request: web.Request) -> web.Response:
    """``/auth/check``'s answer: 200 with the identity, 401 with where to sign in, 403 when
    the role ranks below ``?role=``, 400 for a role that does not exist. Never awaits."""
    wanted = request.query.get("role") if request.query_string else None
    if wanted is not None and wanted not in ROLES:
        return web.Response(status=400)
    session = request.app[keys.SESSIONS].get(session_cookie(request))
    if session is None:  # where to sign in, for the page nginx was asked for
        return web.Response(status=401, headers={"Location": sign_in_location(
            request.headers.get("X-Original-URI"))})
    if wanted is not None and not allows(session.role, wanted):
        reference = request.app[keys.REFUSALS].refused(session, wanted, request.headers.get(
            "X-Original-URI"), client_address(request))
        return web.Response(status=403, headers={"X-Auth-Request-Needed": wanted,
                                                 "X-Auth-Request-Reference": reference})
    cache = request.app[keys.CHECK_HEADERS]
    cached = cache.get(session)
    if cached is None or cached[0] is not session.role:  # built once per session and role
        cached = (session.role, _identity_headers(request, session))
        if len(cache) >= CHECK_HEADERS_KEPT:  # ended sessions' answers go
            store = request.app[keys.SESSIONS]
            for gone in [s for s in cache if not store.is_live(s)]:
                del cache[gone]
        cache[session] = cached
    return web.Response(status=200, headers=cached[1])


CHECK_HEADERS_KEPT = 20_000  # answers kept before those of ended sessions are dropped


def _identity_headers(request: web.Request, session: Session) -> CIMultiDict[str]:
    """The identity, then the security headers: what /auth/check answers for ``session``."""
    headers = CIMultiDict({
        "X-Auth-Request-User": session.upn,
        "X-Auth-Request-Role": session.role,
        "X-Auth-Request-Name": _header_safe(f"{session.given_name} {session.family_name}"),
        "X-Auth-Request-Method": session.method,
    })
    headers.extend(request.app[keys.SECURITY_HEADERS])
    return headers


def _header_safe(text: str) -> str:
    """Names go out as UTF-8 (as aiohttp writes them); control characters never do."""
    if text.isprintable():  # the usual case, without a per-character pass on every check
        return text
    return "".join(c for c in text if c.isprintable())
