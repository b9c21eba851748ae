"""systemd's notification protocol (``sd_notify``) without a dependency.

A unit with ``Type=notify`` sets ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket); the service sends newline-separated ``KEY=value`` assignments as one datagram:
``READY=1`` when it serves, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds,
``RELOADING=1`` / ``STOPPING=1`` around a reload or shutdown and ``STATUS=...`` for
``systemctl status``. Without ``$NOTIFY_SOCKET`` (run by hand, in tests, in a container)
every call is a no-op. Sending never raises: a lost notification must not stop the service.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("agent.systemd")


class Notifier:
    """Sends notifications to the service manager, when there is one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (ignored when ``$WATCHDOG_PID`` is
        another process, as ``sd_watchdog_enabled`` does)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = None
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half the timeout, as systemd recommends."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` as one datagram; True when it was sent."""
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, target)
        except OSError as exc:
            if not self._warned:  # once: the journal must not fill with the same line
                self._warned = True
                log.warning("systemd_notify_failed", error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload it asked for.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(*_status(text))


def _status(text: str | None) -> list[str]:
    if not text:
        return []
    return ["STATUS=" + " ".join(text.split())[:200]]
