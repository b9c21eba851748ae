"""The accounts file: on-premises accounts, written atomically, readable by the service only.

One JSON document (``{"version": 1, "accounts": [...]}``) at ``[local] accounts_file``.
Each account has a name, a role, a first and last name, an scrypt hash (``passwords``) and an
``id`` that changes whenever its role or password does: a local session carries the ``id`` it
signed in with, so a reload ends the sessions of removed or changed accounts.

Permissions: a new file is ``0640 root:sensor-sso-agent`` when written by root and the
service group exists (the service user reads it, nobody else does; like ``agent.toml``),
else ``0600`` owned by the writer (development). A rewrite keeps the owner, group and mode.
The agent refuses a file that others can read or that the group can write, and a symlink.

Names: ``[a-z_][a-z0-9_.-]{0,31}`` — like Linux user names, never an ``@``, so a local name
can never equal an Entra UPN in ``X-Auth-Request-User``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import AgentError
from ..roles import ROLES
from .passwords import is_hash

SERVICE_GROUP = "sensor-sso-agent"
NAME_RULE = "1-32 characters: lowercase letters, digits, '_', '.', '-', starting with a " \
            "letter or '_' (no '@': local names never look like a UPN)"
_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_TEXT_MAX = 64


class AccountsError(AgentError):
    """The accounts file cannot be used (unsafe permissions, malformed) or a change is
    impossible (unknown or duplicate name); the message says which and never holds a
    password."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    given_name: str
    family_name: str
    password_hash: str
    id: str
    changed: float

    @classmethod
    def create(cls, name: str, role: str, given_name: str, family_name: str,
               password_hash: str) -> Account:
        return cls(name=name, role=role, given_name=given_name, family_name=family_name,
                   password_hash=password_hash, id=secrets.token_hex(12), changed=time.time())

    def changed_to(self, **changes: str) -> Account:
        """This account with ``changes`` and a new ``id`` (ends its sessions at reload)."""
        return replace(self, **changes, id=secrets.token_hex(12), changed=time.time())


def valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_account_fields(name: str, role: str, given_name: str, family_name: str) -> None:
    if not valid_name(name):
        raise AccountsError(f"invalid account name: {NAME_RULE}")
    if role not in ROLES:
        raise AccountsError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    for label, text in (("first name", given_name), ("last name", family_name)):
        if not text.strip() or len(text) > _TEXT_MAX or not text.isprintable():
            raise AccountsError(f"the {label} must be 1-{_TEXT_MAX} printable characters")


def read_accounts(path: Path) -> dict[str, Account]:
    """The accounts in ``path`` (none when it does not exist); blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AccountsError(f"{path}: cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AccountsError(f"{path}: not a regular file")
        if info.st_mode & 0o027:
            raise AccountsError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others "
                                "read it or the group change it; chmod 0640 (or 0600)")
        raw = f.read(4 * 1024 * 1024)
    try:
        data = json.loads(raw)
        entries = data["accounts"]
    except (ValueError, KeyError, TypeError):
        entries = None
    if not isinstance(entries, list):
        raise AccountsError(f"{path}: not an accounts file written by "
                            "sensor-sso-agent local-user")
    accounts = [_account(path, index, entry) for index, entry in enumerate(entries)]
    return {a.name: a for a in accounts}


_FIELDS = {"name": str, "role": str, "given_name": str, "family_name": str,
           "password_hash": str, "id": str, "changed": float}
_FIX = "; correct the file, or move it aside and add the accounts again " \
       "(sensor-sso-agent local-user add)"
_JSON_TYPES = {str: "a string", float: "a number", bool: "true or false", int: "a number",
               list: "a list", dict: "an object", type(None): "null"}


def _account(path: Path, index: int, entry: object) -> Account:
    """One entry of the file as an ``Account``; a field missing, unknown or of the wrong
    type is an ``AccountsError`` naming the account and the field (the sign-in would
    otherwise fail on it with a 500, every time)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    which = f"account {name!r}" if isinstance(name, str) and valid_name(name) \
        else f"account #{index + 1}"
    if not isinstance(entry, dict):
        raise AccountsError(f"{path}: {which}: must be an object, is "
                            f"{_JSON_TYPES.get(type(entry), 'something else')}")
    for field in sorted(set(_FIELDS) - set(entry)):
        raise AccountsError(f"{path}: {which}: field {field} is missing")
    for field in sorted(set(entry) - set(_FIELDS)):
        raise AccountsError(f"{path}: {which}: unknown field {field}")
    for field, kind in _FIELDS.items():
        value = entry[field]
        fits = isinstance(value, int | float) and not isinstance(value, bool) \
            if kind is float else isinstance(value, kind) and bool(value)
        if not fits:
            shown = "empty" if value == "" else f"is {_JSON_TYPES.get(type(value), 'other')}"
            raise AccountsError(f"{path}: {which}: field {field} must be "
                                f"{'a non-empty string' if kind is str else 'a number'}, "
                                f"{shown}{_FIX}")
    if not valid_name(entry["name"]):
        raise AccountsError(f"{path}: {which}: field name is not a valid name ({NAME_RULE})"
                            f"{_FIX}")
    if not is_hash(entry["password_hash"]):
        raise AccountsError(f"{path}: {which}: field password_hash is not a hash written by "
                            f"sensor-sso-agent local-user{_FIX}")
    if entry["role"] not in ROLES:
        raise AccountsError(f"{path}: {which}: field role {entry['role']!r} is not one of "
                            f"{', '.join(ROLES)}{_FIX}")
    return Account(**entry)


def write_accounts(path: Path, accounts: Mapping[str, Account]) -> None:
    """Replace ``path`` atomically (temporary file, fsync, rename, fsync the directory)."""
    owner, group, mode = _ownership(path)
    document = {"version": 1, "accounts": [asdict(a) for a in sorted(
        accounts.values(), key=lambda a: a.name)]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner, group)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)  # replaces a symlink itself, never its target
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _ownership(path: Path) -> tuple[int | None, int, int]:
    """(uid, gid, mode) for the new file: the existing file's, or the defaults above."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise AccountsError(f"{path}: not a regular file (a symlink?); refusing to "
                                "write through it")
        mode = stat.S_IMODE(info.st_mode) & 0o640
        return (info.st_uid, info.st_gid, mode) if os.geteuid() == 0 else (None, -1, mode)
    if os.geteuid() == 0:
        try:
            return 0, grp.getgrnam(SERVICE_GROUP).gr_gid, 0o640
        except KeyError:
            pass
    return None, -1, 0o600


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the accounts file's directory (one editor at a time)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise AccountsError(f"{path.parent}: cannot open the directory: {exc.strerror}") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
