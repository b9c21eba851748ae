"""The problem collector: typed reads of one section's keys, each bad value noted, none fatal.

Every check records ``(key, value, why)`` and returns a usable default, so one pass over the
file finds every problem and ``load_settings`` reports them together in one ``ConfigError``.
Checks read files they must (to tell whether the service user can), never change anything.
"""

from __future__ import annotations

import difflib
import stat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..service_user import SERVICE_USER, current_user
from .values import is_guid, mask_credentials, mask_login, parse_duration, shown

Problem = tuple[str, str, str]  # (key, repr of the value or "", why)


def unknown(what: str, name: str, known: Collection[str]) -> str:
    """"unknown key; did you mean client_id? known keys: ..." (the guess only for a near
    miss), for keys (``what`` = "key") and sections ("section")."""
    listed = ", ".join(sorted(known)) if what == "key" else ", ".join(known)
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7)
    guess = f"did you mean {near[0]}? " if near else ""
    return f"unknown {what}; {guess}known{' keys' if what == 'key' else ''}: {listed}"


class Problems:
    """The problems found so far, and the checks that find them.

    ``sso_off``: no ``[[setting]]`` applies to this sensor, so the application and the roles
    may be absent.
    """

    def __init__(self, sso_off: bool = False) -> None:
        self.sso_off = sso_off
        self.problems: list[Problem] = []

    def problem(self, key: str, value: object, why: str) -> None:
        """Note a problem; a credential in ``value`` is masked (``values.shown``)."""
        self.problems.append((key, "" if value is None else shown(key, value), why))

    def section(self, data: Mapping[str, Any], name: str,
                known: Collection[str]) -> Mapping[str, Any]:
        """The table ``[name]`` of ``data`` ({} when absent); its unknown keys are problems."""
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            self.problem(name, value, "must be a table ([" + name + "])")
            return {}
        for key in value:
            if key not in known:
                self.problem(f"{name}.{key}", value[key], unknown("key", key, known))
        return value

    def get(self, sec: Mapping[str, Any], name: str, key: str, kind: type, default: Any) -> Any:
        if key not in sec:
            return default
        value = sec[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            self.problem(f"{name}.{key}", value, f"must be a {kind.__name__}")
            return default
        return value

    def duration(self, sec: Mapping[str, Any], name: str, key: str, default: float) -> float:
        if key not in sec:
            return default
        try:
            seconds = parse_duration(sec[key])
        except ValueError as exc:
            self.problem(f"{name}.{key}", sec[key], str(exc))
            return default
        if seconds <= 0:
            self.problem(f"{name}.{key}", sec[key], "must be longer than zero")
        return seconds

    def guid(self, sec: Mapping[str, Any], name: str, key: str, what: str) -> str:
        value = self.get(sec, name, key, str, None)
        if value is None:
            if key not in sec:
                self.problem(f"{name}.{key}", None, f"required: {what}")
            return ""
        if not is_guid(value):
            self.problem(f"{name}.{key}", value, f"must be a GUID ({what})")
        return str(value).lower()

    def url(self, sec: Mapping[str, Any], name: str, key: str, default: str | None,
            schemes: tuple[str, ...] = ("https",), allow_loopback_http: bool = False,
            allow_credentials: bool = False) -> str | None:
        """A URL of ``schemes``; ``allow_credentials``: it may carry ``user:password@`` (a
        proxy's login), which is masked in every problem."""
        value = self.get(sec, name, key, str, default)
        if value is None:
            return None
        # a proxy's password never reaches the journal
        shown = mask_login(value) if allow_credentials else mask_credentials(value)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            self.problem(f"{name}.{key}", shown, "is not a URL")
            return str(value)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme not in schemes and not (
            allow_loopback_http and parts.scheme == "http" and loopback
        ):
            self.problem(f"{name}.{key}", shown, f"must be an {' or '.join(schemes)} URL")
        elif not parts.hostname:
            self.problem(f"{name}.{key}", shown, "has no host name")
        elif allow_credentials and parts.fragment:
            self.problem(f"{name}.{key}", shown, "must not carry a fragment")
        elif parts.fragment or (not allow_credentials and "@" in parts.netloc):
            self.problem(f"{name}.{key}", shown, "must not carry a fragment or credentials")
        return str(value)

    def file(self, sec: Mapping[str, Any], name: str, key: str) -> Path | None:
        value = self.get(sec, name, key, str, None)
        if value is None:
            return None
        path = Path(value)
        why = unreadable(path)
        if why is not None:
            self.problem(f"{name}.{key}", value, why)
        return path

    @staticmethod
    def readable(path: Path | None) -> bool:
        """Whether to look inside ``path`` (its problem, if any, is already recorded)."""
        return path is not None and unreadable(path) is None


def unreadable(path: Path) -> str | None:
    """Why this process cannot read the file at ``path`` (naming its user), or None."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return "is not a regular file"
        with path.open("rb"):
            pass
    except FileNotFoundError:
        return "file does not exist"
    except PermissionError as exc:
        user = current_user()
        service = "" if user == SERVICE_USER else f"; the service runs as {SERVICE_USER}"
        return (f"not readable by user {user} ({exc.strerror}){service}: e.g. chgrp "
                f"{SERVICE_USER} {path} && chmod g+r {path} (and g+x on its directories)")
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    return None
