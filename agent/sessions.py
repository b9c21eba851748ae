"""The session store: cookie ids to sessions, idle and absolute timeouts, the journal.

The cookie carries a random id only; the store keys sessions by ``sha256(id)`` so neither
memory dumps of the index nor the journal hold a usable cookie value. Lookups are one dict
access. A session's record and what it keeps in memory: ``session_record``.

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
import base64
import gc
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from .journal_lines import CopiedLine, Item, TokenLine
from .roles import RoleDecision, decide_role
from .session_record import Session, session_key
from .state import SessionJournal, StateUnwritable

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


Pairs = list[tuple[Session | None, Item]]


def _items(session: Session) -> Pairs:
    """What the journal holds for ``session``: its record, then its refresh token's line."""
    record = session.record()
    pairs: Pairs = [(None, record)]
    if session.new_refresh_token is not None:
        pairs.append((session, TokenLine(session.key, session.new_refresh_token)))
    elif session.token_at >= 0:
        pairs.append((session, CopiedLine(session.token_at)))
    if len(pairs) > 1:
        record["session"]["refresh_token"] = True  # its line follows
    return pairs


def journal_items(session: Session) -> list[Item]:
    """The lines a new ``session`` is journalled as (``SessionJournal.append`` them)."""
    return [item for _, item in _items(session)]


def _settle(pairs: Pairs, offsets: list[int]) -> None:
    """Note where the journal now holds each session's refresh token."""
    for (session, item), at in zip(pairs, offsets, strict=True):
        if session is not None:
            session.token_at = at
            if isinstance(item, TokenLine) and session.new_refresh_token is item.token:
                session.new_refresh_token = None


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
        self._sessions: dict[bytes, Session] = {}
        # upn (and Entra ID sid) -> its session key, or its keys oldest first (a bare key for
        # the usual one).
        self._by_user: dict[str, bytes | list[bytes]] = {}
        self._by_sid: dict[str, bytes | list[bytes]] = {}
        self._touched: set[bytes] = set()
        self._pending_deletes: list[bytes] = []
        self._changed: set[bytes] = set()  # sessions to journal again (role, refresh token)
        self._io = asyncio.Lock()  # one journal operation at a time (append vs. rewrite)
        self.touch_interval = max(1.0, min(60.0, idle_timeout / 10))
        # CSRF tokens are derived from the session key with this (from the journal's key when
        # there is one, so that they survive a restart).
        self._csrf_secret = secrets.token_bytes(32)

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
        self._csrf_secret = self.journal.sealer.derive(b"sensor-sso-agent/csrf/v1")
        # No collector passes while 100,000 records become objects (none of them cycles):
        # each full pass would walk every session restored so far.
        collecting = gc.isenabled()
        gc.disable()
        try:
            sessions = self._replay()
        finally:
            if collecting:
                gc.enable()
        now = self.clock()
        self._sessions = {}
        self._by_user = {}
        self._by_sid = {}
        inline_tokens = False
        for s in sessions.values():  # journal order: oldest first
            if not self._expired(s, now):
                self._add(s)
                inline_tokens = inline_tokens or s.new_refresh_token is not None
        self._loaded = True
        # Compact only when worth it (or to set unreadable lines aside, or to move refresh
        # tokens of an earlier version out of their records): a rewrite of 100,000 sessions
        # would double the time to ready. On a full disk it waits for a later flush.
        if self.journal.unreadable or inline_tokens or self._journal_bloated():
            pairs = [p for s in self._sessions.values() for p in _items(s)]
            try:
                aside, offsets = self.journal.rewrite(
                    (item for _, item in pairs), set_aside=bool(self.journal.unreadable))
            except OSError:
                pass  # logged by the journal; unreadable lines are skipped again next time
            else:
                _settle(pairs, offsets)
                if aside is not None:
                    log.warning("session_state_set_aside", path=str(aside),
                                readable_records_kept=len(self._sessions))
        log.info("sessions_restored", sessions=len(self._sessions))
        _trim_heap()

    def _replay(self) -> dict[bytes, Session]:
        """The sessions the journal describes, in journal order."""
        assert self.journal is not None
        sessions: dict[bytes, Session] = {}
        from_record = Session.from_record
        awaiting: Session | None = None  # a put whose refresh token's line comes next
        for record in self.journal.replay():
            if isinstance(record, int):  # a refresh token's line: its put came just before
                if awaiting is not None:
                    awaiting.token_at = record
                    awaiting = None
                continue
            if awaiting is not None:  # its token line is missing: it cannot be re-validated
                self._unusable(sessions, awaiting, "put")
                awaiting = None
            op = record.get("op")
            try:
                if op == "put":
                    data = record["session"]
                    s = from_record(data)
                    sessions[s.key] = s
                    if data.get("refresh_token") is True:
                        awaiting = s
                elif op == "touch":
                    s = sessions.get(bytes.fromhex(record["key"]))  # type: ignore[assignment]
                    if s is not None:
                        s.last_seen = s.persisted_seen = float(record["last_seen"])
                elif op == "del":
                    sessions.pop(bytes.fromhex(record["key"]), None)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.error("session_record_unusable", op=str(op)[:16])
        if awaiting is not None:
            self._unusable(sessions, awaiting, "put")
        return sessions

    @staticmethod
    def _unusable(sessions: dict[bytes, Session], session: Session, op: str) -> None:
        if sessions.get(session.key) is session:
            del sessions[session.key]
        log.error("session_record_unusable", op=op, detail="its refresh token is missing")

    def _journal_bloated(self) -> bool:
        """More than twice as many journal lines as live sessions (plus slack)."""
        return self.journal is not None and self.journal.lines > 2 * len(self._sessions) + 1000

    # -- memory: the session dict and the per-user and per-sid indexes ---------------------

    @staticmethod
    def _index(index: dict[str, bytes | list[bytes]], name: str, key: bytes) -> None:
        keys = index.get(name)
        if keys is None:
            index[name] = key
        elif isinstance(keys, bytes):
            index[name] = [keys, key]
        else:
            keys.append(key)

    @staticmethod
    def _unindex(index: dict[str, bytes | list[bytes]], name: str, key: bytes) -> None:
        keys = index.get(name)
        if keys == key:
            del index[name]
        elif isinstance(keys, list):
            if key in keys:
                keys.remove(key)
            if len(keys) == 1:
                index[name] = keys[0]

    def _add(self, session: Session) -> None:
        self._sessions[session.key] = session
        self._index(self._by_user, session.upn, session.key)
        if session.sid:
            self._index(self._by_sid, session.sid, session.key)

    def _drop(self, key: bytes) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is None:
            return None
        self._touched.discard(key)
        self._changed.discard(key)
        self._unindex(self._by_user, session.upn, key)
        if session.sid:
            self._unindex(self._by_sid, session.sid, key)
        return session

    @staticmethod
    def _keys(index: dict[str, bytes | list[bytes]], name: str) -> list[bytes]:
        keys = index.get(name)
        return [] if keys is None else [keys] if isinstance(keys, bytes) else list(keys)

    def keys_of(self, upn: str) -> list[bytes]:
        """The keys of ``upn``'s live sessions, oldest first."""
        return self._keys(self._by_user, upn)

    def _expire(self, key: bytes, session: Session, reason: str) -> None:
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
                pairs: Pairs = [(None, {"op": "del", "key": k.hex()}) for k in evicted]
                pairs += _items(session)
                try:
                    offsets = await asyncio.to_thread(self.journal.append,
                                                      [item for _, item in pairs])
                except OSError as exc:
                    raise StateUnwritable(self.state_problem or str(exc)) from exc
                _settle(pairs, offsets)
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

    async def revoke(self, keys: list[bytes]) -> list[Session]:
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
                                            [{"op": "del", "key": k.hex()} for k in present],
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
        """The sessions of one Entra ID sign-in session (front-channel sign-out): an index
        lookup, so that an unauthenticated request never walks every session."""
        return [self._sessions[k] for k in self._keys(self._by_sid, sid)]

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
        async with self._io:  # token offsets move only under this lock: read them under it
            deletes = self._pending_deletes
            self._pending_deletes = []
            touched = [(k, s, s.last_seen) for k in self._touched
                       if (s := self._sessions.get(k)) is not None]
            self._touched = set()
            changed = [s for k in self._changed if (s := self._sessions.get(k)) is not None]
            self._changed = set()
            pairs: Pairs = [(None, {"op": "del", "key": k.hex()}) for k in deletes]
            pairs += [(None, {"op": "touch", "key": k.hex(), "last_seen": seen})
                      for k, _, seen in touched]
            pairs += [p for s in changed for p in _items(s)]
            if pairs:
                try:
                    offsets = await asyncio.to_thread(self.journal.append,
                                                      [item for _, item in pairs])
                except OSError:
                    self._pending_deletes[:0] = deletes
                    self._touched.update(k for k, s, _ in touched if k in self._sessions)
                    self._changed.update(s.key for s in changed if s.key in self._sessions)
                    return
                _settle(pairs, offsets)
                for _, session, seen in touched:
                    session.persisted_seen = max(session.persisted_seen, seen)
            if self._journal_bloated():
                pairs = [p for s in list(self._sessions.values()) for p in _items(s)]
                try:
                    _, offsets = await asyncio.to_thread(self.journal.rewrite,
                                                         [item for _, item in pairs])
                except OSError:
                    pass  # logged by the journal; the appended journal stays valid
                else:
                    _settle(pairs, offsets)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
