"""What ``/auth/check`` says besides yes: where to sign in (401) and who was refused (403).

Both run only when the answer is not 200, so the hot path stays a dictionary lookup:

* ``sign_in_location``: the sign-in page for the page nginx was asked for, built from the
  ``X-Original-URI`` the snippet sends (the raw ``$request_uri``) and encoded once, so a deep
  link keeps its query (``?from=…&to=…``, ``q=a+b``, ``%2F``) and cannot add parameters of
  its own to ``/login``.
* ``RefusalAudit``: ``console_access_refused`` for a signed-in user whose role ranks below a
  location's, at most once per ``window`` seconds per session and path (a browser retrying
  a page, or a page's many assets, would otherwise write a line each).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from urllib.parse import quote

import structlog

from ..sessions.store import Session
from ..urlpaths import is_local_path

audit = structlog.get_logger("agent.audit")

SIGN_IN_PAGE = "/login"
_MAX_PATH_LOGGED = 256
REFERENCE = re.compile(r"[0-9a-f]{16}")  # a request_id: secrets.token_hex(8)


def sign_in_location(original_uri: str | None) -> str:
    """``/login?next=<the original URI, percent-encoded once>`` (plain ``/login`` when the
    URI is missing or not a path on this sensor)."""
    if not original_uri or not is_local_path(original_uri):
        return SIGN_IN_PAGE
    try:
        return f"{SIGN_IN_PAGE}?next={quote(original_uri, safe='/')}"
    except UnicodeEncodeError:  # bytes that are not UTF-8: no way back to them
        return SIGN_IN_PAGE


def page_reference(ref: str, own: str) -> str:
    """The role-refused page's Reference: the ``console_access_refused`` line's request_id
    that nginx passed on (``?ref=``, from ``X-Auth-Request-Reference``), else the page's."""
    return ref if REFERENCE.fullmatch(ref) else own


def path_of(original_uri: str | None) -> str:
    """The path of ``X-Original-URI`` for the audit line: no query, bounded, printable."""
    if not original_uri:
        return "-"
    path = original_uri.split("?", 1)[0][:_MAX_PATH_LOGGED]
    return "".join(c for c in path if c.isprintable())


class RefusalAudit:
    """Audits role refusals, once per session and path per ``window`` seconds. Each line
    carries a ``request_id``; ``refused`` returns the one of the line that covers this
    refusal (the new line, or the one a repeat within the window was folded into), for the
    page's Reference."""

    def __init__(self, clock: Callable[[], float], window: float = 60.0,
                 max_entries: int = 10000) -> None:
        self.clock = clock
        self.window = window
        self.max_entries = max_entries
        self._last: dict[tuple[bytes, str], tuple[float, str]] = {}
        self._suppressed: dict[tuple[bytes, str], int] = {}

    def refused(self, session: Session, needed: str, original_uri: str | None,
                source_ip: str) -> str:
        path = path_of(original_uri)
        key = (session.key, path)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return last[1]
        if len(self._last) >= self.max_entries:
            self._forget(now)
        reference = secrets.token_hex(8)
        self._last[key] = (now, reference)
        suppressed = self._suppressed.pop(key, 0)
        audit.warning("console_access_refused", upn=session.upn, oid=session.oid,
                      role=session.role, needed=needed, path=path, source_ip=source_ip,
                      via="auth_check", request_id=reference,
                      **({"suppressed": suppressed} if suppressed else {}))
        return reference

    def _forget(self, now: float) -> None:
        """Drop entries older than the window; if none are, start over (bounded memory)."""
        for key in [k for k, (t, _) in self._last.items() if now - t >= self.window]:
            del self._last[key]
            self._suppressed.pop(key, None)
        if len(self._last) >= self.max_entries:
            self._last.clear()
            self._suppressed.clear()
