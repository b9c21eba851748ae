"""One sensor session in memory, and its record in the journal.

Memory is what limits how many sessions an appliance holds (100,000 within +64 MiB), so a
session keeps only what ``/auth/check``, expiry and the audit need: the digest of its cookie as
32 raw bytes, shared tuples of groups and interned role names, and no secrets beyond that. Its
CSRF token is derived from the digest (``SessionStore.csrf_token``), and its refresh token lives
only in the journal (``token_at``: where; read at re-validation) once it is written — until then,
and in a store without ``state_dir``, in ``new_refresh_token``.

A ``put`` record is a JSON list, positional for speed (restoring 100,000 sessions parses
100,000 of them): ``["p", key in hex, upn, given_name, family_name, oid, role, groups,
auth_time, created, last_seen, amr, acrs, sub, sid, revalidated, method, refresh token line
follows (0/1)]``. A field is added at the end: readers take the fields they know and default
the ones a shorter record lacks. Records of earlier versions (a dict of fields by name) are
still read (``from_record``).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from typing import Any

# The fields of a record by name (earlier versions), and which of them have a default.
_NAMED = frozenset(("key", "upn", "given_name", "family_name", "oid", "role", "groups",
                    "auth_time", "created", "last_seen", "amr", "acrs", "sub", "sid",
                    "revalidated", "method"))
PUT, TOUCH, DELETE = "p", "t", "d"  # the tag of a record list
_TOKEN_FOLLOWS = 17  # index of the flag in a put record


def session_key(cookie_id: str) -> bytes:
    """What the store keys a session by: never the cookie id itself."""
    return hashlib.sha256(cookie_id.encode("utf-8", "surrogatepass")).digest()


def _pack(given_name: str, family_name: str, oid: str, sub: str) -> str:
    return f"{len(given_name)}:{len(family_name)}:{len(oid)}:{given_name}{family_name}{oid}{sub}"


def _unpack(packed: str) -> tuple[str, str, str, str]:
    a, b, c, rest = packed.split(":", 3)
    i, j, k = int(a), int(b), int(c)
    return rest[:i], rest[i:i + j], rest[i + j:i + j + k], rest[i + j + k:]


class _Packed:
    """One of the strings packed into ``Session._names`` (read-only unless ``writable``)."""

    def __init__(self, index: int, writable: bool = False) -> None:
        self.index, self.writable = index, writable

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, session: Session, owner: type | None = None) -> str:
        return _unpack(session._names)[self.index]

    def __set__(self, session: Session, value: str) -> None:
        if not self.writable:
            raise AttributeError(f"Session.{self.name} is read-only")
        fields = list(_unpack(session._names))
        fields[self.index] = value
        session._names = _pack(*fields)


class Session:
    """One session. The names, ``oid`` and ``sub`` are read rarely (pages, the audit, one
    re-validation per interval) and share one string: one object instead of four saves about
    100 bytes a session."""

    __slots__ = ("key", "upn", "_names", "role", "groups", "auth_time", "created", "last_seen",
                 "amr", "acrs", "sid", "revalidated", "method", "persisted_seen",
                 "next_revalidation", "failures", "token_at", "new_refresh_token")

    def __init__(self, key: bytes, upn: str, given_name: str, family_name: str, oid: str,
                 role: str, groups: Iterable[str], auth_time: float, created: float,
                 last_seen: float, amr: Iterable[str] = (), acrs: Iterable[str] = (),
                 sub: str = "", sid: str | None = None, revalidated: float = 0.0,
                 method: str = "sso", persisted_seen: float = 0.0,
                 new_refresh_token: str | None = None) -> None:
        self.key = key
        self.upn = upn  # the user name the sensor sees: the UPN, or a local account's name
        self._names = _pack(given_name, family_name, oid, sub)
        # Role and group ids repeat across thousands of sessions: keep one copy of each.
        self.role = sys.intern(role)
        self.groups = shared_groups(groups)
        self.auth_time = auth_time
        self.created = created
        self.last_seen = last_seen
        # Usually empty: the shared empty tuple costs nothing per session.
        self.amr: tuple[str, ...] = tuple(amr) if amr else ()
        self.acrs: tuple[str, ...] = tuple(acrs) if acrs else ()
        # Life after sign-in (docs/sessions.md): the ID token's ``sid`` and when Entra ID last
        # confirmed the session. No refresh token: not re-validated (local accounts, and
        # sessions from before that release).
        self.sid = sid
        self.revalidated = revalidated
        self.method = sys.intern(method)  # "sso" (Entra ID) or "local" (accounts file)
        # Not persisted: the store's and the re-validation engine's bookkeeping.
        self.persisted_seen = persisted_seen
        self.next_revalidation = 0.0
        self.failures = 0  # re-validation attempts that found Entra ID unavailable, in a row
        self.token_at = -1  # offset of the refresh token's line in the journal; -1: none there
        # A refresh token not (yet) in the journal; never logged, never in /auth/me.
        self.new_refresh_token = new_refresh_token

    def __repr__(self) -> str:  # never a token, never the key
        return f"Session(upn={self.upn!r}, role={self.role!r}, method={self.method!r})"

    given_name = _Packed(0, writable=True)
    family_name = _Packed(1, writable=True)
    oid = _Packed(2)
    sub = _Packed(3)

    @property
    def has_refresh_token(self) -> bool:
        return self.token_at >= 0 or self.new_refresh_token is not None

    def row(self, token_follows: bool = False) -> list[Any]:
        """The ``put`` record (the refresh token has a line of its own)."""
        return [PUT, self.key.hex(), self.upn, self.given_name, self.family_name, self.oid,
                self.role, self.groups, self.auth_time, self.created, self.last_seen,
                self.amr, self.acrs, self.sub, self.sid, self.revalidated, self.method,
                int(token_follows)]

    @classmethod
    def from_row(cls, row: list[Any]) -> tuple[Session, bool]:
        """A session from a ``put`` record, and whether its refresh token's line follows
        (``IndexError``/``TypeError``/``ValueError`` when it is not one)."""
        session = cls(bytes.fromhex(row[1]), *row[2:11], *row[11:17])
        return session._restored(), len(row) > _TOKEN_FOLLOWS and row[_TOKEN_FOLLOWS] == 1

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> tuple[Session, bool]:
        """A session from an earlier version's ``put`` record (fields by name). A refresh
        token inline comes back as ``new_refresh_token``."""
        token = data.get("refresh_token")
        fields = {k: v for k, v in data.items() if k in _NAMED}
        fields["key"] = bytes.fromhex(fields["key"])
        session = cls(**fields)._restored()
        if isinstance(token, str) and token:
            session.new_refresh_token = token
        return session, token is True

    def _restored(self) -> Session:
        # Equal timestamps share one float (24 bytes each, at 100,000 sessions 2.3 MiB).
        created = self.created
        if self.last_seen == created:
            self.last_seen = created
        if self.auth_time == created:
            self.auth_time = created
        if not self.revalidated or self.revalidated == created:
            self.revalidated = created
        self.persisted_seen = self.last_seen
        return self

    def apply_role(self, role: str, groups: tuple[str, ...]) -> str | None:
        """Take a new role decision; returns the previous role when it changed."""
        before = self.role
        self.role = sys.intern(role)
        self.groups = shared_groups(groups)
        return before if before != self.role else None


# One tuple per distinct set of groups (a handful: the groups mapped to roles), not per session.
_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {}


def shared_groups(groups: Iterable[str]) -> tuple[str, ...]:
    key = tuple(groups)
    shared = _GROUPS.get(key)
    if shared is None:
        shared = tuple(sys.intern(g) for g in key)
        if len(_GROUPS) < 4096:
            _GROUPS[shared] = shared
    return shared


class KeyIndex:
    """Name (a UPN, an Entra ID ``sid``) -> its session key, or its keys oldest first; a
    bare key for the usual one name, one session (no list per session)."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: dict[str, bytes | list[bytes]] = {}

    def add(self, name: str, key: bytes) -> None:
        keys = self._map.get(name)
        if keys is None:
            self._map[name] = key
        elif isinstance(keys, bytes):
            self._map[name] = [keys, key]
        else:
            keys.append(key)

    def remove(self, name: str, key: bytes) -> None:
        keys = self._map.get(name)
        if keys == key:
            del self._map[name]
        elif isinstance(keys, list):
            if key in keys:
                keys.remove(key)
            if len(keys) == 1:
                self._map[name] = keys[0]

    def keys(self, name: str) -> list[bytes]:
        keys = self._map.get(name)
        return [] if keys is None else [keys] if isinstance(keys, bytes) else list(keys)
