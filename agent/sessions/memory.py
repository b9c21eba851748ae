"""The sessions in memory: lookups by cookie, timeouts, the per-user and per-sid indexes.

The cookie carries a random id only; sessions are keyed by ``sha256(id)`` so neither memory
dumps of the index nor the journal hold a usable cookie value. Lookups are one dict access.
``SessionMemory`` changes nothing on disk; it notes what the journal still has to learn
(idle-timer refreshes, expiries, changed sessions) and hands it over (``take_pending``) to
``SessionStore``, which holds a memory and a journal and makes the one durable with the other.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import structlog

from ..roles import RoleDecision, decide_role, source_of
from .record import KeyIndex, Session, session_key

log = structlog.get_logger("agent.audit")


class SessionMemory:
    def __init__(self, idle_timeout: float, absolute_timeout: float,
                 clock: Callable[[], float], max_per_user: int = 10,
                 revalidate_limit: float | None = None) -> None:
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        # A session with a refresh token that Entra ID has not confirmed for this long
        # (revalidate_interval + revalidate_grace) is over; None: never.
        self.revalidate_limit = revalidate_limit
        self.clock = clock
        self.max_per_user = max_per_user
        self._sessions: dict[bytes, Session] = {}
        self._counts: Counter[tuple[str, str]] = Counter()  # (role, method) → live sessions
        self._by_user = KeyIndex()  # upn -> its sessions' keys, oldest first
        self._by_sid = KeyIndex()  # Entra ID sign-in session -> the sessions it created
        self._touched: set[bytes] = set()
        self._pending_deletes: list[bytes] = []
        self._changed: set[bytes] = set()  # sessions to journal again (role, refresh token)
        self.touch_interval = max(1.0, min(60.0, idle_timeout / 10))
        # CSRF tokens are derived from the session key with this (from the journal's key when
        # there is one, so that they survive a restart).
        self._csrf_secret = secrets.token_bytes(32)

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> None:
        self._sessions[session.key] = session
        self._counts[session.role, session.method] += 1
        self._by_user.add(session.upn, session.key)
        if session.sid:
            self._by_sid.add(session.sid, session.key)

    def drop(self, key: bytes) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is None:
            return None
        self._counts[session.role, session.method] -= 1
        self._touched.discard(key)
        self._changed.discard(key)
        self._by_user.remove(session.upn, key)
        if session.sid:
            self._by_sid.remove(session.sid, key)
        return session

    def forget_all(self) -> None:
        """Empty the memory (before a restore fills it)."""
        self._sessions = {}
        self._counts = Counter()
        self._by_user = KeyIndex()
        self._by_sid = KeyIndex()

    def use_csrf_secret(self, secret: bytes) -> None:
        """Derive CSRF tokens from ``secret`` (the journal's, so that they survive a restart)."""
        self._csrf_secret = secret

    # -- what the journal still has to learn (SessionStore.flush) ---------------------------

    def end_later(self, key: bytes) -> None:
        """Drop the session now; its deletion is journalled by the next flush."""
        if self.drop(key) is not None:
            self._pending_deletes.append(key)

    def take_pending(self) -> tuple[list[bytes], list[tuple[bytes, Session, float]],
                                    list[Session]]:
        """Hand over what the journal has not learnt yet, and forget it here: the keys of
        ended sessions, the touched sessions (with when they were seen), the changed ones."""
        deletes = self._pending_deletes
        touched = [(k, s, s.last_seen) for k in self._touched
                   if (s := self._sessions.get(k)) is not None]
        changed = [s for k in self._changed if (s := self._sessions.get(k)) is not None]
        self._pending_deletes, self._touched, self._changed = [], set(), set()
        return deletes, touched, changed

    def keep_pending(self, deletes: list[bytes], touched: list[tuple[bytes, Session, float]],
                     changed: list[Session]) -> None:
        """Take back what ``take_pending`` handed over and could not be written."""
        self._pending_deletes[:0] = deletes
        self._touched.update(k for k, _, _ in touched if k in self._sessions)
        self._changed.update(s.key for s in changed if s.key in self._sessions)

    def by_role_method(self) -> dict[tuple[str, str], int]:
        """Live sessions by (role, method), kept as sessions come and go (not a walk).
        Expired sessions count until the sweep removes them (a slice every few seconds)."""
        return {key: count for key, count in self._counts.items() if count}

    def apply_role(self, session: Session, role: str, groups: tuple[str, ...]) -> str | None:
        """``session.apply_role`` that keeps the counts by role; the previous role when it
        changed."""
        before = session.role
        changed = session.apply_role(role, groups)
        if changed is not None and self._sessions.get(session.key) is session:
            self._counts[before, session.method] -= 1
            self._counts[session.role, session.method] += 1
        return changed

    def keys_of(self, upn: str) -> list[bytes]:
        """The keys of ``upn``'s live sessions, oldest first."""
        return self._by_user.keys(upn)

    def _expire(self, key: bytes, session: Session, reason: str) -> None:
        """Drop an expired session now; its deletion is journalled by the next flush."""
        self.drop(key)
        self._pending_deletes.append(key)
        if reason == "revalidation_unavailable":
            log.warning("session_revoked", upn=session.upn, oid=session.oid, reason=reason,
                        detail="Entra ID could not confirm the session within "
                               "revalidate_interval + revalidate_grace")
        else:
            log.info("session_expired", upn=session.upn, reason=reason)

    def expires_at(self, s: Session) -> float:
        """When ``s`` ends unless used again: its idle or its absolute timeout, the earlier."""
        return min(s.created + self.absolute_timeout, s.last_seen + self.idle_timeout)

    def expired(self, s: Session, now: float) -> str | None:
        if now - s.created >= self.absolute_timeout:
            return "absolute_timeout"
        if now - s.last_seen >= self.idle_timeout:
            return "idle_timeout"
        if self.revalidate_limit is not None and now - s.revalidated >= \
                self.revalidate_limit and s.has_refresh_token:
            return "revalidation_unavailable"
        return None

    def new_session(self, *, upn: str, given_name: str, family_name: str, oid: str, role: str,
                    groups: list[str], auth_time: float, amr: list[str] | None = None,
                    acrs: list[str] | None = None, sub: str = "", sid: str | None = None,
                    refresh_token: str | None = None, method: str = "sso"
                    ) -> tuple[str, Session]:
        """A fresh cookie id and its session (not yet stored: ``await put``)."""
        cookie_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(
            key=session_key(cookie_id), upn=upn, given_name=given_name,
            family_name=family_name, oid=oid, role=role, groups=tuple(groups),
            auth_time=auth_time, created=now, last_seen=now, amr=tuple(amr or ()),
            acrs=tuple(acrs or ()), sub=sub, sid=sid, revalidated=now, method=method,
            persisted_seen=now, new_refresh_token=refresh_token,
        )
        return cookie_id, session

    def csrf_token(self, session: Session) -> str:
        """The session's CSRF token: derived from its key, never stored."""
        mac = hmac.new(self._csrf_secret, session.key, "sha256").digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def csrf_ok(self, session: Session, supplied: str | None) -> bool:
        return bool(supplied) and hmac.compare_digest(
            str(supplied).encode(), self.csrf_token(session).encode())

    def get(self, cookie_id: str | None, touch: bool = True) -> Session | None:
        """The live session for a cookie id; expired ones are removed (journalled later)."""
        if not cookie_id or len(cookie_id) > 128:
            return None
        key = session_key(cookie_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        reason = self.expired(session, now)
        if reason is not None:
            self._expire(key, session, reason)
            return None
        if touch:
            session.last_seen = now
            if now - session.persisted_seen >= self.touch_interval:
                self._touched.add(key)
        return session

    def live(self) -> list[Session]:
        """A snapshot of the stored sessions (expired ones included until the next sweep)."""
        return list(self._sessions.values())

    def keys(self) -> tuple[bytes, ...]:
        """The stored sessions' keys: a tuple of bytes, which the collector stops walking."""
        return tuple(self._sessions)

    def by_key(self, key: bytes) -> Session | None:
        return self._sessions.get(key)

    def is_live(self, session: Session) -> bool:
        return self._sessions.get(session.key) is session

    def with_sid(self, sid: str) -> list[Session]:
        """The sessions of one Entra ID sign-in session (front-channel sign-out): an index
        lookup, so that an unauthenticated request never walks every session."""
        return [self._sessions[k] for k in self._by_sid.keys(sid)]

    def changed(self, session: Session) -> None:
        """Journal ``session`` again at the next flush (new role, names or refresh token)."""
        if self._sessions.get(session.key) is session:
            self._changed.add(session.key)

    def redecide_roles(self, mapping: Mapping[str, Iterable[str]], source: str = "groups"
                       ) -> tuple[list[Session], list[Session]]:
        """Decide every session's role again from its stored groups or app role values
        (after a ``[roles]`` change). Returns the sessions left with no role and those whose
        role the other source decided (``[roles] source`` changed: what they keep says
        nothing under the new source, so Entra ID must be asked); the caller ends or
        re-validates them."""
        # One decision per distinct set of groups (a handful); None: the other source's.
        decisions: dict[tuple[str, ...], RoleDecision | None] = {}
        orphans: list[Session] = []
        elsewhere: list[Session] = []
        for session in list(self._sessions.values()):
            if session.method == "local":  # no groups: the accounts file gives the role
                continue
            groups = session.groups
            if groups in decisions:
                decision = decisions[groups]
            else:
                decision = decisions[groups] = None if groups and source_of(groups) != source \
                    else decide_role(groups, mapping, source)
            if decision is None:
                elsewhere.append(session)
                continue
            if decision.role is None:
                orphans.append(session)
                continue
            before = self.apply_role(session, decision.role.id, decision.matched_groups)
            if before is not None:
                self._changed.add(session.key)
                log.warning("session_role_changed", upn=session.upn, oid=session.oid,
                            **{"from": before, "to": session.role}, via="config_reload")
        return orphans, elsewhere

    def sweep(self, start: int = 0, count: int | None = None) -> int:
        """Remove expired sessions; returns how many (the next flush journals them).
        ``start``/``count``: only that slice of the store's order (a sweep in slices)."""
        now = self.clock()
        items: Iterable[tuple[bytes, Session]] = self._sessions.items()
        if start or count is not None:
            items = itertools.islice(items, start, None if count is None else start + count)
        gone = [(k, s, r) for k, s in items if (r := self.expired(s, now)) is not None]
        for key, session, reason in gone:
            self._expire(key, session, reason)
        return len(gone)
