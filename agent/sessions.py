"""Sensor sessions: opaque cookie ids, idle and absolute timeouts, encrypted persistence.

The cookie carries a random id only; the store keys sessions by ``sha256(id)`` so neither
memory dumps of the index nor the journal hold a usable cookie value. Lookups are one dict
access.

What survives what: a new session is on disk (fsync) before its cookie is sent, or it is
refused (``StateUnwritable``: the sign-in answers 503). A revocation — sign-out, the per-user
cap, an administrator's revoke — is on disk before the session stops working in memory, so a
restart never brings a revoked session back; if it cannot be written the session lives on and
the caller says so. Expiry needs no such care (a restarted agent computes it again from the
same timestamps); idle-timer refreshes and expiries are journalled in batches by ``flush``,
at most once per session every ``touch_interval``, and kept for the next flush when a write
fails.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog
from multidict import CIMultiDict

from .roles import RoleDecision, decide_role
from .state import SessionJournal, StateUnwritable

log = structlog.get_logger("agent.audit")

COOKIE_NAME = "__Host-sensor_session"

__all__ = ["COOKIE_NAME", "Session", "SessionStore", "StateUnwritable", "session_key"]


_NOT_PERSISTED = ("persisted_seen", "check_headers", "next_revalidation", "failures")


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
    # Life after sign-in (issue 14): the ID token's ``sub`` and ``sid``, the refresh token that
    # re-validation redeems (encrypted at rest like the rest of the record; never logged, never
    # in /auth/me) and when Entra ID last confirmed the session. No refresh token: not
    # re-validated (sessions from before this release, local accounts).
    sub: str = ""
    sid: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    revalidated: float = 0.0
    method: str = "sso"  # how the user signed in: "sso" (Entra ID) or "local" (accounts file)
    persisted_seen: float = 0.0
    next_revalidation: float = 0.0  # set by the re-validation engine (not persisted)
    failures: int = 0  # re-validation attempts that found Entra ID unavailable, in a row
    # What /auth/check answers for this session, built on first use (not persisted).
    check_headers: CIMultiDict[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Role and group ids repeat across thousands of sessions: keep one copy of each.
        self.role = sys.intern(self.role)
        self.groups = _shared_groups(self.groups)
        # Usually empty: the shared empty tuple costs nothing per session.
        self.amr = tuple(self.amr) if self.amr else ()
        self.acrs = tuple(self.acrs) if self.acrs else ()
        self.method = sys.intern(self.method)

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _NOT_PERSISTED:
            data.pop(name)
        return {"op": "put", "session": data}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Session:
        session = cls(**{k: data[k] for k in _PERSISTED if k in data})
        session.persisted_seen = session.last_seen
        if not session.revalidated:
            session.revalidated = session.created
        return session

    def apply_role(self, role: str, groups: tuple[str, ...]) -> str | None:
        """Take a new role decision; returns the previous role when it changed."""
        before = self.role
        self.role = sys.intern(role)
        self.groups = _shared_groups(groups)
        self.check_headers = None  # /auth/check answers with the new role from now on
        return before if before != self.role else None


_PERSISTED = tuple(f.name for f in fields(Session) if f.name not in _NOT_PERSISTED)
# One tuple per distinct set of groups (a handful: the groups mapped to roles), not per session.
_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_groups(groups: Iterable[str]) -> tuple[str, ...]:
    key = tuple(groups)
    shared = _GROUPS.get(key)
    if shared is None:
        shared = tuple(sys.intern(g) for g in key)
        if len(_GROUPS) < 4096:
            _GROUPS[shared] = shared
    return shared


def _trim_heap() -> None:
    """Hand the heap that start-up and the restore freed back to the system (glibc keeps it
    mapped otherwise: about 8 MiB after 100,000 sessions). Elsewhere, nothing."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def session_key(cookie_id: str) -> str:
    return hashlib.sha256(cookie_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, state_dir: Path | None, idle_timeout: float, absolute_timeout: float,
                 clock: Callable[[], float], max_per_user: int = 10,
                 revalidate_limit: float | None = None) -> None:
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        # A session with a refresh token that Entra ID has not confirmed for this long
        # (revalidate_interval + revalidate_grace) is over; None: never.
        self.revalidate_limit = revalidate_limit
        self.clock = clock
        self.max_per_user = max_per_user
        self.journal = SessionJournal(state_dir) if state_dir is not None else None
        self._loaded = self.journal is None
        self._sessions: dict[str, Session] = {}
        # upn -> its session key, or its keys oldest first (a bare str for the usual one).
        self._by_user: dict[str, str | list[str]] = {}
        self._touched: set[str] = set()
        self._pending_deletes: list[str] = []
        self._changed: set[str] = set()  # sessions to journal again (role, refresh token)
        self._io = asyncio.Lock()  # one journal operation at a time (append vs. rewrite)
        self.touch_interval = max(1.0, min(60.0, idle_timeout / 10))

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def state_problem(self) -> str | None:
        """Why new sessions cannot be written now (None when they can, or without state)."""
        if self.journal is None or (self._loaded and self.journal.writable):
            return None
        if not self._loaded and self.journal.problem is None:
            return f"{self.journal.dir} is not open yet"
        return self.journal.problem or f"cannot write to {self.journal.dir}: the space kept " \
            "for sign-outs is in use (file system full)"

    def load(self) -> None:
        """Open the journal and replay it, dropping expired sessions (blocking).

        Raises ``StateDirUnsafe`` for a state_dir others could change. On a full or
        read-only file system the agent still starts: sessions already on disk are
        restored when their key can be read, and new ones are refused until state can be
        written (``flush`` keeps trying)."""
        if self.journal is None:
            return
        try:
            self.journal.open()
        except OSError:
            return  # logged by the journal; flush() calls load() again
        sessions: dict[str, Session] = {}
        # No collector passes while 100,000 records become objects (none of them cycles):
        # each full pass would walk every session restored so far.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._replay(sessions)
        finally:
            if collecting:
                gc.enable()
        now = self.clock()
        self._sessions = {}
        self._by_user = {}
        for s in sessions.values():  # journal order: oldest first
            if not self._expired(s, now):
                self._add(s)
        self._loaded = True
        # Compact only when worth it (or to set unreadable lines aside): a rewrite of 100,000
        # sessions would double the time to ready. On a full disk it waits for a later flush.
        if self.journal.unreadable or self._journal_bloated():
            try:
                aside = self.journal.rewrite((s.record() for s in self._sessions.values()),
                                             set_aside=bool(self.journal.unreadable))
            except OSError:
                pass  # logged by the journal; unreadable lines are skipped again next time
            else:
                if aside is not None:
                    log.warning("session_state_set_aside", path=str(aside),
                                readable_records_kept=len(self._sessions))
        log.info("sessions_restored", sessions=len(self._sessions))
        _trim_heap()

    def _replay(self, sessions: dict[str, Session]) -> None:
        assert self.journal is not None
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

    def _journal_bloated(self) -> bool:
        """More than twice as many journal lines as live sessions (plus slack)."""
        return self.journal is not None and self.journal.lines > 2 * len(self._sessions) + 1000

    # -- memory: the session dict and the per-user index --------------------------------

    def _add(self, session: Session) -> None:
        self._sessions[session.key] = session
        keys = self._by_user.get(session.upn)
        if keys is None:
            self._by_user[session.upn] = session.key
        elif isinstance(keys, str):
            self._by_user[session.upn] = [keys, session.key]
        else:
            keys.append(session.key)

    def _drop(self, key: str) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is None:
            return None
        self._touched.discard(key)
        self._changed.discard(key)
        keys = self._by_user.get(session.upn)
        if keys == key:
            del self._by_user[session.upn]
        elif isinstance(keys, list):
            if key in keys:
                keys.remove(key)
            if len(keys) == 1:
                self._by_user[session.upn] = keys[0]
        return session

    def keys_of(self, upn: str) -> list[str]:
        """The keys of ``upn``'s live sessions, oldest first."""
        keys = self._by_user.get(upn)
        return [] if keys is None else [keys] if isinstance(keys, str) else list(keys)

    def _expire(self, key: str, session: Session, reason: str) -> None:
        """Drop an expired session now; its deletion is journalled by the next flush."""
        self._drop(key)
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

    def _expired(self, s: Session, now: float) -> str | None:
        if now - s.created >= self.absolute_timeout:
            return "absolute_timeout"
        if now - s.last_seen >= self.idle_timeout:
            return "idle_timeout"
        if s.refresh_token is not None and self.revalidate_limit is not None and \
                now - s.revalidated >= self.revalidate_limit:
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
            auth_time=auth_time, created=now, last_seen=now,
            csrf_token=secrets.token_urlsafe(32), amr=tuple(amr or ()), acrs=tuple(acrs or ()),
            sub=sub, sid=sid, refresh_token=refresh_token, revalidated=now, method=method,
            persisted_seen=now,
        )
        return cookie_id, session

    async def put(self, session: Session) -> None:
        """Store a new session, ending the user's oldest beyond ``max_per_user`` in the same
        write. Raises ``StateUnwritable`` (nothing stored, nothing ended) when state cannot
        be written."""
        async with self._io:
            now = self.clock()
            live = sorted((s for k in self.keys_of(session.upn)
                           if not self._expired(s := self._sessions[k], now)),
                          key=lambda s: s.created)
            evicted = [s.key for s in live[:max(0, len(live) - self.max_per_user + 1)]]
            if self.journal is not None:
                if not self._loaded or not self.journal.writable:
                    raise StateUnwritable(self.state_problem or "state_dir is not open")
                records = [{"op": "del", "key": k} for k in evicted] + [session.record()]
                try:
                    await asyncio.to_thread(self.journal.append, records)
                except OSError as exc:
                    raise StateUnwritable(self.state_problem or str(exc)) from exc
            for key in evicted:
                gone = self._drop(key)
                if gone is not None:
                    log.info("session_revoked", reason="max_sessions_per_user", upn=gone.upn,
                             role=gone.role, max_sessions_per_user=self.max_per_user,
                             created=gone.created)
            self._add(session)

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

    async def revoke(self, keys: list[str]) -> list[Session]:
        """End these sessions: their deletion is on disk before they stop working. Raises
        ``StateUnwritable`` (and they keep working) when it cannot be written; the caller
        audits with its reason."""
        async with self._io:
            present = [k for k in keys if k in self._sessions]
            if not present:
                return []
            if self.journal is not None:
                try:
                    await asyncio.to_thread(self.journal.append,
                                            [{"op": "del", "key": k} for k in present],
                                            revocation=True)
                except OSError as exc:
                    raise StateUnwritable(self.state_problem or str(exc)) from exc
            return [s for k in present if (s := self._drop(k)) is not None]

    async def delete(self, cookie_id: str) -> Session | None:
        """Sign-out: ``revoke`` of the cookie's session (``StateUnwritable`` as there)."""
        gone = await self.revoke([session_key(cookie_id)])
        return gone[0] if gone else None

    # -- life after sign-in: re-validation, revocation by the agent, role changes ----------

    def live(self) -> list[Session]:
        """A snapshot of the stored sessions (expired ones included until the next sweep)."""
        return list(self._sessions.values())

    def is_live(self, session: Session) -> bool:
        return self._sessions.get(session.key) is session

    def with_sid(self, sid: str) -> list[Session]:
        """The sessions of one Entra ID sign-in session (front-channel sign-out; rare)."""
        return [s for s in self._sessions.values() if s.sid == sid]

    def changed(self, session: Session) -> None:
        """Journal ``session`` again at the next flush (new role, names or refresh token)."""
        if self._sessions.get(session.key) is session:
            self._changed.add(session.key)

    async def end(self, session: Session, reason: str, event: str = "session_revoked",
                  **info: Any) -> bool:
        """End ``session`` now and audit why. Its deletion is on disk first when it can be
        written; when it cannot, the session ends in memory anyway (an offboarded user must
        not keep the console because the disk is full) and a later flush journals it."""
        if self._sessions.get(session.key) is not session:
            return False
        persisted = True
        try:
            await self.revoke([session.key])
        except StateUnwritable:
            persisted = False
            if self._drop(session.key) is not None:
                self._pending_deletes.append(session.key)
        level = log.warning if event == "session_revoked" else log.info
        level(event, upn=session.upn, oid=session.oid, role=session.role, reason=reason,
              **info, **({} if persisted else {"persisted": False}))
        return True

    def redecide_roles(self, mapping: Mapping[str, Iterable[str]]) -> list[Session]:
        """Decide every session's role again from its stored groups (after a ``[roles]``
        change); returns the sessions left with no role (the caller ends them)."""
        decisions: dict[tuple[str, ...], RoleDecision] = {}
        orphans: list[Session] = []
        for session in list(self._sessions.values()):
            if session.method == "local":  # no groups: the accounts file gives the role
                continue
            decision = decisions.get(session.groups)
            if decision is None:
                decision = decisions[session.groups] = decide_role(session.groups, mapping)
            if decision.role is None:
                orphans.append(session)
                continue
            before = session.apply_role(decision.role.id, decision.matched_groups)
            if before is not None:
                self._changed.add(session.key)
                log.warning("session_role_changed", upn=session.upn, oid=session.oid,
                            **{"from": before, "to": session.role}, via="config_reload")
        return orphans

    def sweep(self) -> int:
        """Remove expired sessions; returns how many (the next flush journals them)."""
        now = self.clock()
        gone = [(k, s, r) for k, s in self._sessions.items()
                if (r := self._expired(s, now)) is not None]
        for key, session, reason in gone:
            self._expire(key, session, reason)
        return len(gone)

    async def flush(self) -> None:
        """Journal batched idle-timer refreshes and expiries; compact when the journal bloats.
        Never raises for a write that fails: what was not written is kept for the next one,
        and a state_dir that could not be opened, or a missing reserve, is tried again."""
        if self.journal is None:
            self._touched.clear()
            self._pending_deletes.clear()
            self._changed.clear()
            return
        if not self._loaded:
            await asyncio.to_thread(self.load)
            return
        if self.journal.problem is not None:
            await asyncio.to_thread(self.journal.probe)
        deletes = self._pending_deletes
        self._pending_deletes = []
        touched = [(k, s, s.last_seen) for k in self._touched
                   if (s := self._sessions.get(k)) is not None]
        self._touched = set()
        changed = [s for k in self._changed if (s := self._sessions.get(k)) is not None]
        self._changed = set()
        records: list[dict[str, Any]] = [{"op": "del", "key": k} for k in deletes]
        records += [{"op": "touch", "key": k, "last_seen": seen} for k, _, seen in touched]
        records += [s.record() for s in changed]
        async with self._io:
            if records:
                try:
                    await asyncio.to_thread(self.journal.append, records)
                except OSError:
                    self._pending_deletes[:0] = deletes
                    self._touched.update(k for k, s, _ in touched if k in self._sessions)
                    self._changed.update(s.key for s in changed if s.key in self._sessions)
                    return
                for _, session, seen in touched:
                    session.persisted_seen = max(session.persisted_seen, seen)
            if self._journal_bloated():
                snapshot = [s.record() for s in list(self._sessions.values())]
                try:
                    await asyncio.to_thread(self.journal.rewrite, snapshot)
                except OSError:
                    pass  # logged by the journal; the appended journal stays valid

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
