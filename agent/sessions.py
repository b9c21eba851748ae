"""Sensor sessions: opaque cookie ids, idle and absolute timeouts, encrypted persistence.

The cookie carries a random id only; the store keys sessions by ``sha256(id)`` so neither
memory dumps of the index nor the journal hold a usable cookie value. Lookups are one dict
access. Creations and deletions are journalled (fsync) before the caller answers; idle-timer
refreshes are journalled in batches, at most once per session every ``touch_interval``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog

from .state import SessionJournal

log = structlog.get_logger("agent.audit")

COOKIE_NAME = "__Host-sensor_session"


_NOT_PERSISTED = ("persisted_seen", "check_headers")


@dataclass(slots=True)
class Session:
    key: str
    upn: str
    given_name: str
    family_name: str
    oid: str
    role: str
    groups: tuple[str, ...]
    auth_time: float
    created: float
    last_seen: float
    csrf_token: str
    amr: tuple[str, ...] = ()
    acrs: tuple[str, ...] = ()
    persisted_seen: float = 0.0
    # What /auth/check answers for this session, built on first use (not persisted).
    check_headers: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Role and group ids repeat across thousands of sessions: keep one copy of each.
        self.role = sys.intern(self.role)
        self.groups = tuple(sys.intern(g) for g in self.groups)
        # Usually empty: the shared empty tuple costs nothing per session.
        self.amr = tuple(self.amr) if self.amr else ()
        self.acrs = tuple(self.acrs) if self.acrs else ()

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _NOT_PERSISTED:
            data.pop(name)
        return {"op": "put", "session": data}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Session:
        names = {f.name for f in fields(cls)} - set(_NOT_PERSISTED)
        session = cls(**{k: data[k] for k in names if k in data})
        session.persisted_seen = session.last_seen
        return session


def session_key(cookie_id: str) -> str:
    return hashlib.sha256(cookie_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, state_dir: Path | None, idle_timeout: float, absolute_timeout: float,
                 clock: Callable[[], float]) -> None:
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.clock = clock
        self.journal = SessionJournal(state_dir) if state_dir is not None else None
        self._sessions: dict[str, Session] = {}
        self._touched: set[str] = set()
        self._pending_deletes: list[str] = []
        self._io = asyncio.Lock()  # one journal operation at a time (append vs. rewrite)
        self.touch_interval = max(1.0, min(60.0, idle_timeout / 10))

    def __len__(self) -> int:
        return len(self._sessions)

    def load(self) -> None:
        """Open the journal and replay it, dropping expired sessions (blocking)."""
        if self.journal is None:
            return
        self.journal.open()
        sessions: dict[str, Session] = {}
        for record in self.journal.replay():
            op = record.get("op")
            try:
                if op == "put":
                    s = Session.from_record(record["session"])
                    sessions[s.key] = s
                elif op == "touch" and record.get("key") in sessions:
                    sessions[record["key"]].last_seen = float(record["last_seen"])
                    sessions[record["key"]].persisted_seen = float(record["last_seen"])
                elif op == "del":
                    sessions.pop(str(record.get("key")), None)
            except (KeyError, TypeError, ValueError):
                log.error("session_record_unusable", op=str(op)[:16])
        now = self.clock()
        self._sessions = {k: s for k, s in sessions.items() if not self._expired(s, now)}
        # Compact only when worth it (or to drop unreadable lines): a rewrite of 100,000
        # sessions would double the time to ready.
        if self.journal.unreadable or self._journal_bloated():
            self.journal.rewrite(s.record() for s in self._sessions.values())
        log.info("sessions_restored", sessions=len(self._sessions))

    def _journal_bloated(self) -> bool:
        """More than twice as many journal lines as live sessions (plus slack)."""
        return self.journal is not None and self.journal.lines > 2 * len(self._sessions) + 1000

    async def _append(self, records: list[dict[str, Any]]) -> None:
        assert self.journal is not None
        async with self._io:
            await asyncio.to_thread(self.journal.append, records)

    def _expire(self, key: str, session: Session, reason: str) -> None:
        """Drop an expired session now; its deletion is journalled by the next flush."""
        del self._sessions[key]
        self._touched.discard(key)
        self._pending_deletes.append(key)
        log.info("session_expired", upn=session.upn, reason=reason)

    def _expired(self, s: Session, now: float) -> str | None:
        if now - s.created >= self.absolute_timeout:
            return "absolute_timeout"
        if now - s.last_seen >= self.idle_timeout:
            return "idle_timeout"
        return None

    def new_session(self, *, upn: str, given_name: str, family_name: str, oid: str, role: str,
                    groups: list[str], auth_time: float, amr: list[str] | None = None,
                    acrs: list[str] | None = None) -> tuple[str, Session]:
        """A fresh cookie id and its session (not yet stored: ``await put``)."""
        cookie_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(
            key=session_key(cookie_id), upn=upn, given_name=given_name,
            family_name=family_name, oid=oid, role=role, groups=tuple(groups),
            auth_time=auth_time, created=now, last_seen=now,
            csrf_token=secrets.token_urlsafe(32), amr=tuple(amr or ()), acrs=tuple(acrs or ()),
            persisted_seen=now,
        )
        return cookie_id, session

    async def put(self, session: Session) -> None:
        if self.journal is not None:
            await self._append([session.record()])
        self._sessions[session.key] = session

    def get(self, cookie_id: str | None, touch: bool = True) -> Session | None:
        """The live session for a cookie id; expired ones are removed (journalled later)."""
        if not cookie_id or len(cookie_id) > 128:
            return None
        key = session_key(cookie_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        reason = self._expired(session, now)
        if reason is not None:
            self._expire(key, session, reason)
            return None
        if touch:
            session.last_seen = now
            if now - session.persisted_seen >= self.touch_interval:
                self._touched.add(key)
        return session

    async def delete(self, cookie_id: str) -> Session | None:
        key = session_key(cookie_id)
        session = self._sessions.pop(key, None)
        self._touched.discard(key)
        if session is not None and self.journal is not None:
            await self._append([{"op": "del", "key": key}])
        return session

    def sweep(self) -> int:
        """Remove expired sessions; returns how many (the next flush journals them)."""
        now = self.clock()
        gone = [(k, s, r) for k, s in self._sessions.items()
                if (r := self._expired(s, now)) is not None]
        for key, session, reason in gone:
            self._expire(key, session, reason)
        return len(gone)

    async def flush(self) -> None:
        """Journal batched idle-timer refreshes and expiries; compact when the journal bloats."""
        if self.journal is None:
            self._touched.clear()
            self._pending_deletes.clear()
            return
        records: list[dict[str, Any]] = [{"op": "del", "key": k} for k in self._pending_deletes]
        self._pending_deletes.clear()
        for key in self._touched:
            session = self._sessions.get(key)
            if session is not None:
                records.append({"op": "touch", "key": key, "last_seen": session.last_seen})
                session.persisted_seen = session.last_seen
        self._touched.clear()
        async with self._io:
            if records:
                await asyncio.to_thread(self.journal.append, records)
            if self._journal_bloated():
                snapshot = [s.record() for s in list(self._sessions.values())]
                await asyncio.to_thread(self.journal.rewrite, snapshot)

