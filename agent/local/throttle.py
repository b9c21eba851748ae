"""Growing delays after failed sign-ins, kept per key (an account name, a client address).

The first ``free`` failures cost nothing; each further one locks the key for twice as long as
the previous (``base``, ``2*base``, … up to ``cap`` seconds). While a key is locked every
attempt is refused without looking at the password, so a correct password after a lockout
still waits. A key's failures are forgotten ``forget`` seconds after its last one (or at a
successful sign-in, for account keys). At most ``capacity`` keys are kept (oldest dropped),
so a flood of made-up names cannot grow memory without bound.
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
    forget: float = 900.0
    capacity: int = 10_000
    _keys: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, init=False,
                                                repr=False)

    def __len__(self) -> int:
        return len(self._keys)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        now = self.clock()
        if now >= entry.locked_until and now - entry.last >= self.forget:
            del self._keys[key]
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, key: str) -> float:
        """Count a failure; returns the lockout it starts (0 while failures are free)."""
        now = self.clock()
        entry = self._keys.pop(key, None)
        if entry is None or now - entry.last >= self.forget:
            entry = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        delay = doubling(over, self.base, self.cap)
        entry.locked_until = now + delay
        self._keys[key] = entry  # most recent last
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return delay

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)
