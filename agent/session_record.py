"""One sensor session in memory, and its record in the journal.

Memory is what limits how many sessions an appliance holds (100,000 within +64 MiB), so a
session keeps only what ``/auth/check``, expiry and the audit need: the digest of its cookie as
32 raw bytes, shared tuples of groups and interned role names, and no secrets beyond that. Its
CSRF token is derived from the digest (``SessionStore.csrf_token``), and its refresh token lives
only in the journal (``token_at``: where; read at re-validation) once it is written — until then,
and in a store without ``state_dir``, in ``new_refresh_token``.

A ``put`` record carries the persisted fields by name (the key in hex); fields that have their
default value are left out, so records stay short and fields are added without a format change
(readers ignore names they do not know and default the ones they miss).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

# Persisted fields with a default, and that default (left out of records when equal).
_DEFAULTS: dict[str, Any] = {"amr": (), "acrs": (), "sub": "", "sid": None, "revalidated": 0.0,
                             "method": "sso"}
_REQUIRED = ("upn", "given_name", "family_name", "oid", "role", "groups", "auth_time",
             "created", "last_seen")
_PERSISTED = frozenset(("key", *_REQUIRED, *_DEFAULTS))


def session_key(cookie_id: str) -> bytes:
    """What the store keys a session by: never the cookie id itself."""
    return hashlib.sha256(cookie_id.encode("utf-8", "surrogatepass")).digest()


@dataclass(slots=True)
class Session:
    key: bytes
    upn: str
    given_name: str
    family_name: str
    oid: str
    role: str
    groups: tuple[str, ...]
    auth_time: float
    created: float
    last_seen: float
    amr: tuple[str, ...] = ()
    acrs: tuple[str, ...] = ()
    # Life after sign-in (issue 14): the ID token's ``sub`` and ``sid`` and when Entra ID last
    # confirmed the session. No refresh token: not re-validated (local accounts, and sessions
    # from before that release).
    sub: str = ""
    sid: str | None = None
    revalidated: float = 0.0
    method: str = "sso"  # how the user signed in: "sso" (Entra ID) or "local" (accounts file)
    # Not persisted: the store's and the re-validation engine's bookkeeping.
    persisted_seen: float = 0.0
    next_revalidation: float = 0.0
    failures: int = 0  # re-validation attempts that found Entra ID unavailable, in a row
    token_at: int = -1  # offset of the refresh token's line in the journal; -1: none there
    # A refresh token not (yet) in the journal; never logged, never in /auth/me.
    new_refresh_token: str | None = field(default=None, repr=False)
    # What /auth/check answers for this session, built on first use.
    check_headers: CIMultiDict[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Role and group ids repeat across thousands of sessions: keep one copy of each.
        self.role = sys.intern(self.role)
        self.groups = shared_groups(self.groups)
        # Usually empty: the shared empty tuple costs nothing per session.
        self.amr = tuple(self.amr) if self.amr else ()
        self.acrs = tuple(self.acrs) if self.acrs else ()
        self.method = sys.intern(self.method)

    @property
    def has_refresh_token(self) -> bool:
        return self.token_at >= 0 or self.new_refresh_token is not None

    def record(self) -> dict[str, Any]:
        """The ``put`` record (without the refresh token: that has a line of its own)."""
        data: dict[str, Any] = {"key": self.key.hex()}
        for name in _REQUIRED:
            data[name] = getattr(self, name)
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                data[name] = value
        return {"op": "put", "session": data}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Session:
        """A session from a ``put`` record's fields (``KeyError``/``TypeError``/``ValueError``
        when it is not one). A refresh token inline (records of earlier versions) comes back
        as ``new_refresh_token``."""
        token = data.get("refresh_token")
        if not _PERSISTED.issuperset(data):
            data = {k: v for k, v in data.items() if k in _PERSISTED}
        data["key"] = bytes.fromhex(data["key"])
        session = cls(**data)
        session.persisted_seen = session.last_seen
        if not session.revalidated:
            session.revalidated = session.created
        if isinstance(token, str) and token:
            session.new_refresh_token = token
        return session

    def apply_role(self, role: str, groups: tuple[str, ...]) -> str | None:
        """Take a new role decision; returns the previous role when it changed."""
        before = self.role
        self.role = sys.intern(role)
        self.groups = shared_groups(groups)
        self.check_headers = None  # /auth/check answers with the new role from now on
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
