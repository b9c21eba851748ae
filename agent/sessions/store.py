"""The session store: the sessions in memory (``memory``) made durable by the journal.

A session's record and what it keeps in memory: ``record``; how sessions map onto journal
lines: ``records``; the journal itself: ``journal``.

What survives what: a new session is on disk (fsync) before its cookie is sent, or it is
refused (``StateUnwritable``: the sign-in answers 503). A revocation — sign-out, the per-user
cap, an administrator's revoke — is on disk before the session stops working in memory, so a
restart never brings a revoked session back; if it cannot be written the session lives on and
the caller says so. Expiry needs no such care (a restarted agent computes it again from the
same timestamps); idle-timer refreshes and expiries are journalled in batches by ``flush``,
at most once per session every ``touch_interval``, and kept for the next flush when a write
fails. Refresh tokens are read from the journal one at a time, when re-validation needs one
(``refresh_token``), and never kept in memory once written.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from .journal import JournalOutOfStep, SessionJournal, StateUnwritable
from .memory import SessionMemory
from .record import DELETE, TOUCH, Session, session_key
from .records import Pairs, items_of, journal_items, replay_sessions, settle

log = structlog.get_logger("agent.audit")

COOKIE_NAME = "__Host-sensor_session"

__all__ = ["COOKIE_NAME", "Session", "SessionStore", "StateUnwritable", "journal_items",
           "session_key"]


def _trim_heap() -> None:
    """Hand the heap that start-up and the restore freed back to the system (glibc keeps it
    mapped otherwise: about 8 MiB after 100,000 sessions). Elsewhere, nothing."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SessionStore:
    """The sessions in memory (``memory``: lookups, timeouts, indexes) made durable by the
    journal (``journal``; None without ``state_dir``). What memory answers alone is answered
    by it directly (``get``, ``live``, ...: bound here, so /auth/check's lookup stays one
    call); what changes sessions goes through the journal first."""

    def __init__(self, state_dir: Path | None, idle_timeout: float, absolute_timeout: float,
                 clock: Callable[[], float], max_per_user: int = 10,
                 revalidate_limit: float | None = None) -> None:
        self.memory = memory = SessionMemory(idle_timeout, absolute_timeout, clock,
                                             max_per_user, revalidate_limit)
        self.journal = SessionJournal(state_dir) if state_dir is not None else None
        self.clock, self.max_per_user = clock, max_per_user
        self._loaded = self.journal is None
        self._io = asyncio.Lock()  # one journal operation at a time (append vs. rewrite)
        self.get = memory.get
        self.live, self.keys, self.by_key = memory.live, memory.keys, memory.by_key
        self.is_live, self.with_sid, self.keys_of = memory.is_live, memory.with_sid, \
            memory.keys_of
        self.changed, self.apply_role = memory.changed, memory.apply_role
        self.redecide_roles, self.sweep = memory.redecide_roles, memory.sweep
        self.new_session, self.expires_at = memory.new_session, memory.expires_at
        self.csrf_token, self.csrf_ok = memory.csrf_token, memory.csrf_ok
        self.by_role_method = memory.by_role_method

    def __len__(self) -> int:
        return len(self.memory)

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
        self.memory.use_csrf_secret(self.journal.sealer.derive(b"sensor-sso-agent/csrf/v1"))
        # No collector passes while 100,000 records become objects (none of them cycles):
        # each full pass would walk every session restored so far.
        collecting = gc.isenabled()
        gc.disable()
        try:
            sessions = replay_sessions(self.journal)
        finally:
            if collecting:
                gc.enable()
        now = self.clock()
        self.memory.forget_all()
        inline_tokens = False
        for s in sessions.values():  # journal order: oldest first
            if not self.memory.expired(s, now):
                self.memory.add(s)
                inline_tokens = inline_tokens or s.new_refresh_token is not None
        self._loaded = True
        # Compact only when worth it (or to set unreadable lines aside, or to move refresh
        # tokens of an earlier version out of their records): a rewrite of 100,000 sessions
        # would double the time to ready. On a full disk it waits for a later flush.
        if self.journal.unreadable or inline_tokens or self._journal_bloated():
            pairs = [p for s in self.memory.live() for p in items_of(s)]
            try:
                aside, offsets = self.journal.rewrite(
                    (item for _, item in pairs), set_aside=bool(self.journal.unreadable))
            except (OSError, JournalOutOfStep):
                pass  # logged by the journal; unreadable lines are skipped again next time
            else:
                settle(pairs, offsets)
                if aside is not None:
                    log.warning("session_state_set_aside", path=str(aside),
                                readable_records_kept=len(self.memory))
        log.info("sessions_restored", sessions=len(self.memory))
        _trim_heap()

    def _journal_bloated(self) -> bool:
        """More than twice as many journal lines as live sessions (plus slack)."""
        return self.journal is not None and self.journal.lines > 2 * len(self.memory) + 1000

    async def put(self, session: Session) -> None:
        """Store a new session, ending the user's oldest beyond ``max_per_user`` in the same
        write. Raises ``StateUnwritable`` (nothing stored, nothing ended) when state cannot
        be written."""
        async with self._io:
            now = self.clock()
            live = sorted((s for k in self.keys_of(session.upn)
                           if (s := self.by_key(k)) is not None
                           and not self.memory.expired(s, now)),
                          key=lambda s: s.created)
            evicted = [s.key for s in live[:max(0, len(live) - self.max_per_user + 1)]]
            if self.journal is not None:
                if not self._loaded or not self.journal.writable:
                    raise StateUnwritable(self.state_problem or "state_dir is not open")
                pairs: Pairs = [(None, [DELETE, k.hex()]) for k in evicted]
                pairs += items_of(session)
                try:
                    offsets = await asyncio.to_thread(self.journal.append,
                                                      [item for _, item in pairs])
                except OSError as exc:
                    raise StateUnwritable(self.state_problem or str(exc)) from exc
                settle(pairs, offsets)
            for key in evicted:
                gone = self.memory.drop(key)
                if gone is not None:
                    log.info("session_revoked", reason="max_sessions_per_user", upn=gone.upn,
                             role=gone.role, max_sessions_per_user=self.max_per_user,
                             created=gone.created)
            self.memory.add(session)

    async def revoke(self, keys: list[bytes]) -> list[Session]:
        """End these sessions: their deletion is on disk before they stop working. Raises
        ``StateUnwritable`` (and they keep working) when it cannot be written; the caller
        audits with its reason."""
        async with self._io:
            present = [k for k in keys if self.by_key(k) is not None]
            if not present:
                return []
            if self.journal is not None:
                try:
                    await asyncio.to_thread(self.journal.append,
                                            [[DELETE, k.hex()] for k in present],
                                            revocation=True)
                except OSError as exc:
                    raise StateUnwritable(self.state_problem or str(exc)) from exc
            return [s for k in present if (s := self.memory.drop(k)) is not None]

    async def delete(self, cookie_id: str) -> Session | None:
        """Sign-out: ``revoke`` of the cookie's session (``StateUnwritable`` as there)."""
        gone = await self.revoke([session_key(cookie_id)])
        return gone[0] if gone else None

    async def refresh_token(self, session: Session) -> str | None:
        """The session's refresh token, read from the journal (None: it has none, or its line
        cannot be read now; re-validation then tries again later)."""
        if session.token_at < 0 or self.journal is None:
            return session.new_refresh_token
        async with self._io:  # offsets move only under this lock
            if session.new_refresh_token is not None:  # not journalled yet
                return session.new_refresh_token
            try:
                token = await asyncio.to_thread(self.journal.read_token, session.token_at,
                                                session.key)
            except OSError as exc:
                log.error("session_refresh_token_unreadable", upn=session.upn,
                          error=exc.strerror or str(exc))
                return None
        if token is None:
            log.error("session_refresh_token_unreadable", upn=session.upn,
                      error="the journal line does not hold this session's refresh token")
        return token

    def replace_refresh_token(self, session: Session, token: str) -> None:
        """Keep a rotated refresh token until the next flush journals it."""
        session.new_refresh_token = token
        self.changed(session)

    async def end(self, session: Session, reason: str, event: str = "session_revoked",
                  **info: Any) -> bool:
        """End ``session`` now and audit why. Its deletion is on disk first when it can be
        written; when it cannot, the session ends in memory anyway (an offboarded user must
        not keep the console because the disk is full) and a later flush journals it."""
        if not self.is_live(session):
            return False
        persisted = True
        try:
            await self.revoke([session.key])
        except StateUnwritable:
            persisted = False
            self.memory.end_later(session.key)
        level = log.warning if event == "session_revoked" else log.info
        level(event, upn=session.upn, oid=session.oid, role=session.role, reason=reason,
              **info, **({} if persisted else {"persisted": False}))
        return True

    async def flush(self) -> None:
        """Journal batched idle-timer refreshes and expiries; compact when the journal bloats.
        Never raises for a write that fails: what was not written is kept for the next one,
        and a state_dir that could not be opened, or a missing reserve, is tried again."""
        if self.journal is None:
            self.memory.take_pending()  # nothing to write them to
            return
        if not self._loaded:
            await asyncio.to_thread(self.load)
            return
        if self.journal.problem is not None:
            await asyncio.to_thread(self.journal.probe)
        async with self._io:  # token offsets move only under this lock: read them under it
            deletes, touched, changed = self.memory.take_pending()
            pairs: Pairs = [(None, [DELETE, k.hex()]) for k in deletes]
            pairs += [(None, [TOUCH, k.hex(), seen])
                      for k, _, seen in touched]
            pairs += [p for s in changed for p in items_of(s)]
            if pairs:
                try:
                    offsets = await asyncio.to_thread(self.journal.append,
                                                      [item for _, item in pairs])
                except (OSError, JournalOutOfStep):  # logged by the journal
                    self.memory.keep_pending(deletes, touched, changed)
                    return
                settle(pairs, offsets)
                for _, session, seen in touched:
                    session.persisted_seen = max(session.persisted_seen, seen)
            if self._journal_bloated():
                pairs = [p for s in self.memory.live() for p in items_of(s)]
                try:
                    _, offsets = await asyncio.to_thread(self.journal.rewrite,
                                                         [item for _, item in pairs])
                except (OSError, JournalOutOfStep):
                    pass  # logged by the journal; the appended journal stays valid
                else:
                    settle(pairs, offsets)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
