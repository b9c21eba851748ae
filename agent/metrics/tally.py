"""Process-lifetime counts: plain integers the agent's parts add to, read at scrape time.

One ``AgentMetrics`` per agent process (``Service`` hands the same one to every application
a reload builds), so a counter never goes back to zero while the process lives. Counting is
a dictionary increment; nothing here locks, allocates per event or imports
``prometheus_client``. Label values pass through ``labels.one_of``: only the fixed sets.

``/auth/check`` is the hot path (tens of thousands of answers a second): ``AuthCheckTimes``
keeps its answers by status and a latency histogram as a list of bucket counts, found with
one ``bisect``; the cumulative buckets Prometheus wants are summed at scrape time.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

from .labels import METHODS, REASONS, RELOAD_RESULTS, TASKS, THROTTLED, one_of

# Seconds; sub-millisecond where /auth/check answers (about 50 us of the agent's own time).
AUTH_CHECK_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                      0.1, 1.0)
RECENT_WINDOW = 3600.0  # what ``status`` calls "the last hour"
_SLOT = 60.0  # the last hour is kept as one counter per minute


class AuthCheckTimes:
    """``/auth/check``'s answers by status and the time the agent took for each (added to
    by ``web.handlers.timed_auth_check``, inline: the hot path)."""

    def __init__(self, bounds: tuple[float, ...] = AUTH_CHECK_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.statuses: Counter[int] = Counter()

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, answers at or below it)`` for each bound, then ``(inf, total)``."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            running += count
            out.append((bound, running))
        return out


class Recent:
    """Events of the last hour by key, one ``Counter`` per minute (for ``status``)."""

    def __init__(self, clock: Callable[[], float], window: float = RECENT_WINDOW) -> None:
        self.clock = clock
        self.window = window
        self._slots: deque[tuple[float, Counter[tuple[str, ...]]]] = deque()

    def add(self, key: tuple[str, ...]) -> None:
        start = self.clock() // _SLOT * _SLOT
        if not self._slots or self._slots[-1][0] != start:
            self._slots.append((start, Counter()))
            self._trim()
        self._slots[-1][1][key] += 1

    def _trim(self) -> None:
        oldest = self.clock() - self.window
        while self._slots and self._slots[0][0] + _SLOT <= oldest:
            self._slots.popleft()

    def totals(self) -> Counter[tuple[str, ...]]:
        self._trim()
        total: Counter[tuple[str, ...]] = Counter()
        for _, counts in self._slots:
            total.update(counts)
        return total


class AgentMetrics:
    """Everything the agent counts, for as long as the process lives."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.auth_check = AuthCheckTimes()
        self.sign_ins: Counter[tuple[str, str]] = Counter()  # (method, outcome)
        self.refusals: Counter[tuple[str, str]] = Counter()  # (method, reason)
        self.revalidations: Counter[str] = Counter()  # outcome (the Revalidator adds to it)
        self.reloads: Counter[str] = Counter({result: 0 for result in RELOAD_RESULTS})
        self.last_reload_success = self.started  # the configuration read at start counts
        self.malformed = 0  # requests the front door answered with a generic 4xx
        self.throttled: Counter[str] = Counter({what: 0 for what in THROTTLED})
        self.recent = Recent(clock)
        # Failures of the background tasks of applications a reload replaced (each
        # application's supervisor counts its own): added to the current one's.
        self.earlier_task_failures: Counter[str] = Counter()
        for method in METHODS:
            for outcome in ("succeeded", "refused"):
                self.sign_ins[(method, outcome)] = 0

    def signed_in(self, method: str) -> None:
        method = one_of(method, METHODS)
        self.sign_ins[(method, "succeeded")] += 1
        self.recent.add(("succeeded", method, ""))

    def refused(self, method: str, reason: str, throttled: bool = False) -> None:
        """A sign-in (SSO start or callback, local form) that gave no session; ``throttled``:
        refused to slow the client down (HTTP 429), counted as a throttled request too."""
        if throttled:
            self.throttle("sso_start" if method == "sso" else "local_sign_in")
        method, reason = one_of(method, METHODS), one_of(reason, REASONS)
        self.sign_ins[(method, "refused")] += 1
        self.refusals[(method, reason)] += 1
        self.recent.add(("refused", method, reason))

    def throttle(self, what: str) -> None:
        self.throttled[one_of(what, THROTTLED)] += 1

    def reloaded(self, result: str) -> None:
        self.reloads[one_of(result, RELOAD_RESULTS)] += 1
        if result == "applied":
            self.last_reload_success = self.clock()

    def replaced(self, task_failures: dict[str, int]) -> None:
        """An application is replaced (reload): keep its tasks' failure counts."""
        self.earlier_task_failures.update(task_failures)

    def task_failures(self, current: Mapping[str, int]) -> dict[str, int]:
        """Failures per task for the process's life: the current application's and those
        of the applications before it."""
        total: Counter[str] = Counter()
        for counts in (self.earlier_task_failures, current):
            for task, count in counts.items():
                total[one_of(task, TASKS)] += count
        return dict(sorted(total.items()))

    def count_malformed(self) -> None:
        self.malformed += 1

    def last_hour(self) -> dict[str, object]:
        """Sign-ins and refusals of the last hour: totals by method, refusals by reason."""
        signed_in: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for (kind, method, reason), count in self.recent.totals().items():
            if kind == "succeeded":
                signed_in[method] += count
            else:
                refused[method] += count
                reasons[f"{method}:{reason}"] += count
        return {"sign_ins": dict(signed_in), "refusals": dict(refused),
                "refusals_by_reason": dict(reasons.most_common())}
