"""Growing delays after failed sign-ins, kept per key (an account name, a client address).

The first ``free`` failures cost nothing; each further one locks the key for twice as long as
the previous (``base``, ``2*base``, … up to ``cap`` seconds). An attempt is counted as a
failure *before* its password is checked (``count``), so concurrent attempts cannot all slip
in under the last free failure; a success undoes it (``refund``) or clears the key
(``succeeded``). With ``forget`` set, a key's failures are forgotten ``forget`` seconds after
its last one; with ``forget=None`` they are kept until a success (an account's failures past
the cap keep it locking at once). With ``capacity`` set, at most that many keys are kept
(oldest dropped), so a flood of made-up names cannot grow memory without bound; a table of
the accounts in the file needs no such bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from ..backoff import doubling


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


@dataclass(eq=False)
class FailureThrottle:
    clock: Callable[[], float]
    _: KW_ONLY
    free: int
    base: float = 1.0
    cap: float = 900.0
    forget: float | None = 900.0
    capacity: int | None = 10_000
    _keys: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, init=False,
                                                repr=False)

    def __len__(self) -> int:
        return len(self._keys)

    def _entry(self, key: str) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is None:
            return None
        now = self.clock()
        if self.forget is not None and now >= entry.locked_until \
                and now - entry.last >= self.forget:
            del self._keys[key]
            return None
        return entry

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        entry = self._entry(key)
        return 0.0 if entry is None else max(0.0, entry.locked_until - self.clock())

    def failures(self, key: str) -> int:
        """Failures on record for ``key`` (attempts counted and not refunded)."""
        entry = self._entry(key)
        return 0 if entry is None else entry.count

    def count(self, key: str) -> float:
        """Count an attempt as a failure; returns the lockout it starts (0 while free)."""
        now = self.clock()
        entry = self._entry(key)
        self._keys.pop(key, None)
        if entry is None:
            entry = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        delay = doubling(entry.count - self.free, self.base, self.cap)
        entry.locked_until = max(entry.locked_until, now + delay)
        self._keys[key] = entry  # most recent last
        while self.capacity is not None and len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return delay

    def refund(self, key: str) -> None:
        """The attempt ``count`` took was no failure: take it back and lift its lockout."""
        entry = self._keys.get(key)
        if entry is None:
            return
        entry.count -= 1
        entry.locked_until = self.clock()
        if entry.count <= 0:
            del self._keys[key]

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)
