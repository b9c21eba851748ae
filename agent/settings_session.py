"""Validation of the keys for life after sign-in (part of ``settings``).

``[session] revalidate_interval`` / ``revalidate_grace`` and ``[server] admin_socket``; with
``platform = "spa"`` an ``absolute_timeout`` above 24 h is an error, because Entra ID's SPA
refresh tokens end 24 h after the sign-in and re-validation could not cover the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import _Validator as Validator

MIN_REVALIDATE_INTERVAL = 10.0
SPA_REFRESH_TOKEN_LIFETIME = 86400.0
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def revalidation_settings(v: Validator, s: Mapping[str, Any], absolute: float) -> dict[str, Any]:
    """``revalidate_interval`` (at least 10 s) and ``revalidate_grace`` (``"0s"`` = strict)."""
    from .settings import parse_duration

    interval = v.duration(s, "session", "revalidate_interval", 300.0)
    if interval < MIN_REVALIDATE_INTERVAL:
        v.problem("session.revalidate_interval", s.get("revalidate_interval"),
                  "must be at least \"10s\" (each re-validation calls Entra ID)")
    grace = 3600.0
    if "revalidate_grace" in s:
        try:
            grace = parse_duration(s["revalidate_grace"])
        except ValueError as exc:
            v.problem("session.revalidate_grace", s["revalidate_grace"], str(exc))
    entra = v.data.get("entra")
    platform = entra.get("platform", "spa") if isinstance(entra, Mapping) else "spa"
    if platform == "spa" and absolute > SPA_REFRESH_TOKEN_LIFETIME and not v.sso_off:
        v.problem("session.absolute_timeout", s.get("absolute_timeout"),
                  "must be at most \"24h\" with platform = \"spa\": Entra ID ends an SPA's "
                  "refresh token 24 h after the sign-in, so the session could not be "
                  "re-validated after that (use platform = \"web\" for longer sessions)")
    return {"revalidate_interval": interval, "revalidate_grace": grace}


def admin_socket_path(v: Validator, s: Mapping[str, Any], default: Path) -> Path:
    """An absolute path short enough for a Unix socket address."""
    value = v.get(s, "server", "admin_socket", str, str(default))
    if not value.startswith("/") or len(value.encode()) > _MAX_SOCKET_PATH:
        v.problem("server.admin_socket", value,
                  f"must be an absolute path of at most {_MAX_SOCKET_PATH} bytes")
        return default
    return Path(value)
