"""structlog configured once: JSON lines on stdout for journald, readable on a terminal.

Audit events use stable snake_case names (``sso_login_started``, ``sso_login_succeeded``,
``sso_login_refused``, ``sso_logout``, ``session_expired``, ``jwks_refreshed``,
``idp_error``) with keyword values. ``redact`` is the last line of defence: any value under a
key that names a secret is replaced, whatever the caller passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "code", "verifier", "cookie", "secret", "password", "nonce",
                "assertion", "authorization", "state", "binding")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if key != "event" and any(word in lowered for word in _SECRET_KEYS) \
                and lowered not in ("status", "status_code"):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog (call once, from the command line)."""
    if json is None:
        json = not sys.stdout.isatty()
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
