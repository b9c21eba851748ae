"""structlog configured once: JSON lines on stdout for journald, readable on a terminal.

Audit events use stable snake_case names (``sso_login_started``, ``sso_login_succeeded``,
``sso_login_refused``, ``sso_logout``, ``session_expired``, ``jwks_refreshed``,
``idp_error``) with keyword values. ``redact`` is the last line of defence: any value under a
key that names a secret is replaced, whatever the caller passed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from .clientaddr import client_key

_SECRET_KEYS = ("token", "code", "verifier", "cookie", "secret", "password", "nonce",
                "assertion", "authorization", "state", "binding")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if key != "event" and any(word in lowered for word in _SECRET_KEYS) \
                and lowered not in ("status", "status_code"):
            event[key] = "[redacted]"
    return event


def exception_summary(_: Any, __: str, event: MutableMapping[str, Any]
                      ) -> MutableMapping[str, Any]:
    """An exception becomes its type and its frames in one field; never its message, which
    may echo what a client sent (aiohttp's parser errors quote the raw header bytes)."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event["error_type"] = exc_info[0].__name__
        frames = traceback.extract_tb(exc_info[2])
        event["traceback"] = "".join(traceback.format_list(frames)[-8:])
    event.pop("exception", None)
    event.pop("stack", None)
    return event


_AUDIT_PREFIXES = ("sso_", "session_", "local_", "sessions_admin", "state_evicted",
                   "audit_burst", "idp_error", "jwks_refreshed", "console_access_refused")
_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
AUDIT_PRIORITY = 5  # notice: journald rate-limits each priority apart


def journal_priority(renderer: Any) -> Any:
    """Prefix each line with its syslog priority (``<5>``) for journald: audit events are
    ``notice``, everything else its level. journald keeps one rate-limit pool per priority,
    so no amount of other output can make it drop an audit event."""

    def render(logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        what = str(event.get("event", ""))
        priority = AUDIT_PRIORITY if what.startswith(_AUDIT_PREFIXES) else \
            _PRIORITY.get(str(event.get("level", "info")), 6)
        return f"<{priority}>{renderer(logger, name, event)}"

    return render


def stdout_is_journal() -> bool:
    """True when systemd connected stdout to the journal ($JOURNAL_STREAM = device:inode)."""
    try:
        device, inode = os.environ["JOURNAL_STREAM"].split(":")
        st = os.fstat(sys.stdout.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (KeyError, ValueError, OSError):
        return False


def configure_logging(level: str = "info", json: bool | None = None,
                      file: TextIO | None = None) -> None:
    """Configure structlog, and route every standard-library logger (aiohttp, asyncio, msal)
    through the same rendering: one JSON object a line on ``file`` (default stdout; the
    ``local-user`` commands use stderr) (call once)."""
    out = file or sys.stdout
    if json is None:
        json = not out.isatty()
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    if stdout_is_journal():
        renderer = journal_priority(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            exception_summary,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            exception_summary,
            renderer,
        ],
        pass_foreign_args=False,
    ))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # the agent's own events are structlog's, not these
    logging.captureWarnings(True)


@dataclass(eq=False)
class AuditBursts:
    """Audit lines per client, bounded: one summary per client per interval for the rest.

    In each ``interval`` (on the injected clock) a client's first ``allowance`` events of each
    kind (event name and reason) are written as they come; further ones are only counted,
    and at the end of the interval each such client gets one ``audit_burst`` event with the
    counts per kind. At most ``max_summaries`` clients are named; the rest share one line. A
    flood of ``sso_login_started`` from one client is then a few lines, not 10,000, while a
    refusal of another kind from the same client still goes out at once.
    """

    logger: Any
    clock: Callable[[], float]
    interval: float = 10.0
    allowance: int = 10
    total_allowance: int = 200
    max_summaries: int = 20
    _window_end: float = field(default=0.0, init=False)
    _written: int = field(default=0, init=False)
    _seen: dict[tuple[str, str], int] = field(default_factory=dict, init=False, repr=False)
    _counted: dict[str, Counter[str]] = field(default_factory=dict, init=False, repr=False)

    def event(self, level: str, event: str, source_ip: str, **fields: Any) -> None:
        """Write ``event`` for ``source_ip`` now, or count it into the interval's summary."""
        now = self.clock()
        if now >= self._window_end:
            self.flush(now)
        key = client_key(source_ip)
        kind = f"{event}/{fields['reason']}" if fields.get("reason") else event
        seen = self._seen[key, kind] = self._seen.get((key, kind), 0) + 1
        if seen <= self.allowance and self._written < self.total_allowance:
            self._written += 1
            getattr(self.logger, level)(event, source_ip=source_ip, **fields)
            return
        counts = self._counted.get(key)
        if counts is None:
            counts = self._counted[key] = Counter()
        counts[kind] += 1
        if len(self._seen) > 100_000:  # an interval with a vast address space: summarize now
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write the summaries of the interval that ended (or is cut short)."""
        now = self.clock() if now is None else now
        counted = sorted(self._counted.items(), key=lambda kv: -kv[1].total())
        for key, counts in counted[:self.max_summaries]:
            self.logger.warning("audit_burst", source_ip=key, interval_s=self.interval,
                                suppressed=dict(counts), total=counts.total())
        rest = counted[self.max_summaries:]
        if rest:
            counts = sum((c for _, c in rest), Counter())
            self.logger.warning("audit_burst", source_ip="(other clients)", clients=len(rest),
                                interval_s=self.interval, suppressed=dict(counts),
                                total=counts.total())
        self._seen.clear()
        self._counted.clear()
        self._written = 0
        self._window_end = now + self.interval

    def flush_due(self) -> None:
        """Flush when the interval is over (a periodic task calls this between events)."""
        if self._counted and self.clock() >= self._window_end:
            self.flush()
