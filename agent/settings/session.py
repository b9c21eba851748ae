"""``[session]``: timeouts, the state directory, limits, and re-validation with Entra ID.

With ``platform = "spa"`` an ``absolute_timeout`` above 24 h is an error, because Entra ID's
SPA refresh tokens end 24 h after the sign-in and re-validation could not cover the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import SessionSettings
from .problems import Problems
from .values import parse_duration

SESSION_KEYS = {"idle_timeout", "absolute_timeout", "state_dir", "sign_in_timeout",
                "max_pending_sign_ins", "sign_ins_per_minute_per_client",
                "max_sessions_per_user", "revalidate_interval", "revalidate_grace"}
MIN_REVALIDATE_INTERVAL = 10.0
SPA_REFRESH_TOKEN_LIFETIME = 86400.0


def build_session(p: Problems, s: Mapping[str, Any], platform: object) -> SessionSettings:
    """``platform``: ``[entra] platform`` as the file gives it (the SPA 24 h limit)."""
    d = SessionSettings()
    idle = p.duration(s, "session", "idle_timeout", d.idle_timeout)
    absolute = p.duration(s, "session", "absolute_timeout", d.absolute_timeout)
    if idle > absolute:
        p.problem("session.idle_timeout", s.get("idle_timeout"),
                  "must not be longer than session.absolute_timeout")
    state_dir = p.get(s, "session", "state_dir", str, str(d.state_dir))
    max_pending = p.get(s, "session", "max_pending_sign_ins", int, d.max_pending_sign_ins)
    per_client = p.get(s, "session", "sign_ins_per_minute_per_client", int,
                       d.sign_ins_per_minute_per_client)
    per_user = p.get(s, "session", "max_sessions_per_user", int, d.max_sessions_per_user)
    for key, value in (("max_pending_sign_ins", max_pending),
                       ("sign_ins_per_minute_per_client", per_client),
                       ("max_sessions_per_user", per_user)):
        if value < 1:
            p.problem(f"session.{key}", value, "must be at least 1")
    sign_in_timeout = p.duration(s, "session", "sign_in_timeout", d.sign_in_timeout)
    interval, grace = _revalidation(p, s, absolute, platform)
    return SessionSettings(
        idle_timeout=idle, absolute_timeout=absolute, state_dir=Path(state_dir),
        sign_in_timeout=sign_in_timeout, max_pending_sign_ins=max_pending,
        sign_ins_per_minute_per_client=per_client, max_sessions_per_user=per_user,
        revalidate_interval=interval, revalidate_grace=grace,
    )


def _revalidation(p: Problems, s: Mapping[str, Any], absolute: float,
                  platform: object) -> tuple[float, float]:
    """``revalidate_interval`` (at least 10 s) and ``revalidate_grace`` (``"0s"`` = strict)."""
    interval = p.duration(s, "session", "revalidate_interval", 300.0)
    if interval < MIN_REVALIDATE_INTERVAL:
        p.problem("session.revalidate_interval", s.get("revalidate_interval"),
                  "must be at least \"10s\" (each re-validation calls Entra ID)")
    grace = 3600.0
    if "revalidate_grace" in s:
        try:
            grace = parse_duration(s["revalidate_grace"])
        except ValueError as exc:
            p.problem("session.revalidate_grace", s["revalidate_grace"], str(exc))
    if platform == "spa" and absolute > SPA_REFRESH_TOKEN_LIFETIME and not p.sso_off:
        p.problem("session.absolute_timeout", s.get("absolute_timeout"),
                  "must be at most \"24h\" with platform = \"spa\": Entra ID ends an SPA's "
                  "refresh token 24 h after the sign-in, so the session could not be "
                  "re-validated after that (use platform = \"web\" for longer sessions)")
    return interval, grace
