"""A refused sign-in's page, shown at a clean address instead of the callback's.

The callback's address carries the authorization response (``?code=…&state=…``). Answering
a refusal there would leave the code in the browser's history and let a reload post it
again, so the callback answers ``303`` to ``/auth/sso/refused`` and this keeps the page a
few minutes for that one browser (a random ``__Host-`` cookie names it). The page keeps its
status (400, 403, 502) and its reference. Bounded: the oldest page goes first; a page that
is gone (a restart, the time passed) becomes a plain "this sign-in did not complete".
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from . import keys
from .pages import plain_error_page

REFUSED_PATH = "/auth/sso/refused"
COOKIE = "__Host-sso_refused"
KEEP_SECONDS = 300
MAX_PAGES = 1000


class RefusalPages:
    def __init__(self, clock: Callable[[], float], keep: float = KEEP_SECONDS,
                 max_pages: int = MAX_PAGES) -> None:
        self.clock, self.keep, self.max_pages = clock, keep, max_pages
        self._pages: OrderedDict[str, tuple[float, int, bytes]] = OrderedDict()

    def redirect(self, page: web.Response) -> web.Response:
        """``303`` to the clean address that shows ``page`` to this browser."""
        token = secrets.token_urlsafe(16)
        while len(self._pages) >= self.max_pages:
            self._pages.popitem(last=False)
        body = page.body if isinstance(page.body, bytes) else b""
        self._pages[token] = (self.clock() + self.keep, page.status, body)
        response = web.Response(status=303, headers={"Location": REFUSED_PATH})
        response.set_cookie(COOKIE, token, path="/", secure=True, httponly=True,
                            samesite="Lax", max_age=int(self.keep))
        return response

    def page(self, token: str | None) -> tuple[int, bytes] | None:
        """The kept page's status and HTML, while it is kept."""
        kept = self._pages.get(token or "")
        if kept is None:
            return None
        if kept[0] <= self.clock():
            del self._pages[token or ""]
            return None
        return kept[1], kept[2]


REFUSAL_PAGES = web.AppKey("refusal_pages", RefusalPages)


async def refused(request: web.Request) -> web.Response:
    """``GET /auth/sso/refused``: the page the callback kept for this browser."""
    kept = request.app[REFUSAL_PAGES].page(request.cookies.get(COOKIE))
    if kept is None:
        return plain_error_page(
            request.app[keys.SETTINGS], 400, "Sign-in did not complete",
            "This sign-in's answer is no longer here (it is shown for a few minutes only).",
            "Select Try again to sign in.", str(request.get(keys.REQUEST_ID, "-")))
    return web.Response(status=kept[0], body=kept[1], content_type="text/html",
                        charset="utf-8")
