"""Values as the configuration file writes them: durations, listen addresses, GUIDs, URLs."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from ..roles import is_group_id

ZERO_GUID = "00000000-0000-0000-0000-000000000000"  # the example's placeholder ids
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"30m"`` → 1800.0; raises ValueError for anything else."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("expected a duration such as \"45s\", \"30m\", \"12h\" or \"1d\"")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """1800.0 → ``"30m"``: the largest unit that divides it (inverse of parse_duration)."""
    millis = round(seconds * 1000)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def listen_text(host: str, port: int) -> str:
    """``server.listen`` as the file writes it: host:port, IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# A GUID in its 36-character form (the only form Entra ID shows): tenant, client and group ids
is_guid = is_group_id


def mask_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, even when it does not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{rest[end:]}"


def mask_login(url: str) -> str:
    """A proxy URL with everything up to its last ``@`` after the scheme shown as ``***``: a
    password holding ``/ # ?`` not percent-encoded ends the host part early, and
    ``mask_credentials`` would then show part of it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential")


def shown(key: str, value: object) -> str:
    """``repr(value)`` as a problem about ``key`` may print it: ``check-config`` runs before
    every start, so this reaches journald. The value of a key whose name says it holds a
    secret is ``'***'`` whatever its type (a ``*_file`` key's absolute path excepted); in a
    proxy key every string with an ``@`` is masked as a login; anywhere else, every string
    that looks like a URL with ``user:password@`` — inside lists and tables too."""
    leaf = key.rsplit(".", 1)[-1].lower()
    if any(word in leaf for word in _SECRET_WORDS):
        if leaf.endswith("_file") and isinstance(value, str) and value.startswith("/"):
            return repr(value)
        return "'***'"
    return repr(_masked(value, "proxy" in leaf))


def _masked(value: object, proxy: bool) -> object:
    if isinstance(value, str):
        if proxy:
            return mask_login(value) if "@" in value else value
        login = value.partition("@")[0]
        return mask_credentials(value) if "://" in value or "@" in value and ":" in login \
            else value
    if isinstance(value, list | tuple):
        return [_masked(item, proxy) for item in value]
    if isinstance(value, dict):
        return {_masked(k, proxy): _masked(v, proxy) for k, v in value.items()}
    return value


def split_proxy_login(url: str) -> tuple[str, str | None]:
    """A proxy URL without its ``user:password@``, and the ``Proxy-Authorization`` value for
    that login (percent-decoded, UTF-8 as RFC 7617 says), or None when it carries none.

    Both HTTP clients get the login as a header and the URL without it, so neither an error
    message nor a log line of theirs can carry the password.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    login, _, host = parts.netloc.rpartition("@")
    user, _, password = login.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), "Basic " + token
