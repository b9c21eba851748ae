"""Per-client limits: one token bucket per client, bounded in memory, on an injected clock.

``PerClientLimiter(per_minute=30)`` lets each client spend 30 at once and earns it back at 30
a minute (a steady 0.5/s). Clients are ``client_key``s: an IPv6 address counts as its /64.
At most ``max_clients`` buckets are kept; the least recently used goes first (a client not
seen for a while has a full bucket anyway, so forgetting it changes nothing). Reusable for
any per-client throttle (sign-in starts; a local sign-in form's password attempts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from .clientaddr import client_key


class PerClientLimiter:
    def __init__(self, per_minute: float, clock: Callable[[], float],
                 burst: float | None = None, max_clients: int = 100_000) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.capacity = float(burst if burst is not None else per_minute)
        self.refill = per_minute / 60.0  # tokens a second
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return self.capacity
        self._buckets.move_to_end(key)  # most recently seen last
        tokens, when = entry
        return min(self.capacity, tokens + max(0.0, now - when) * self.refill)

    def allow(self, client: str, cost: float = 1.0) -> bool:
        """Spend ``cost`` from ``client``'s bucket; False (nothing spent) when it lacks it."""
        key, now = client_key(client), self.clock()
        tokens = self._tokens(key, now)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, client: str, cost: float = 1.0) -> float:
        """Seconds until ``client`` may spend ``cost`` again (0 when it may now)."""
        key, now = client_key(client), self.clock()
        if key not in self._buckets:
            return 0.0
        tokens = self._tokens(key, now)
        self._buckets[key] = (tokens, now)
        return max(0.0, (cost - tokens) / self.refill)
