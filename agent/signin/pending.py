"""Pending sign-ins: server-side, bound to one browser, single use, short-lived, bounded.

A pending sign-in is the MSAL flow (PKCE verifier, state, nonce) plus where the user wants to
land. It is found by ``state`` and belongs to the browser that holds the binding cookie whose
hash it stores.

Bounds, so that no client can push out another's sign-in:

* each client (``client_key``: an address, an IPv6 /64) may start ``per_minute`` sign-ins a
  minute (a token bucket, ``agent.ratelimit``) and keeps at most ``per_client`` pending; a
  further start drops that client's *own* oldest;
* the store holds at most ``capacity``; when full, the client holding the most pending
  sign-ins loses its oldest. A user in the middle of one sign-in holds one, so a flood from
  many addresses evicts the flood's entries first.

A callback for an evicted sign-in is told so (``state_evicted``), not taken for a replay.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..clientaddr import client_key
from ..ratelimit import PerClientLimiter


@dataclass
class PendingSignIn:
    flow: dict[str, Any]
    binding_hash: str
    next_path: str
    created: float
    client: str


def binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode("utf-8", "surrogatepass")).hexdigest()


class PendingSignIns:
    def __init__(self, ttl: float, capacity: int, per_minute: int,
                 clock: Callable[[], float], per_client: int | None = None) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.per_minute = per_minute
        self.per_client = max(1, min(per_client or per_minute, capacity))
        self.clock = clock
        self.limiter = PerClientLimiter(per_minute, clock)
        self._items: OrderedDict[str, PendingSignIn] = OrderedDict()  # oldest first
        self._by_client: dict[str, OrderedDict[str, None]] = {}  # key → its states, oldest first
        # n → keys holding n pending. OrderedDicts: taking the first of a plain dict that had
        # its first entries deleted walks over their holes (slow under a flood).
        self._by_count: dict[int, OrderedDict[str, None]] = {}
        self._most = 0
        self._evicted: OrderedDict[str, None] = OrderedDict()  # recently evicted states
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def admit(self, client: str) -> bool:
        """Count one sign-in start for ``client``; False once it is over its budget."""
        return self.limiter.allow(client)

    def add(self, state: str, pending: PendingSignIn) -> list[PendingSignIn]:
        """Keep ``pending``; return the sign-ins evicted to make room (for the audit log)."""
        self._purge()
        key = client_key(pending.client)
        evicted = []
        own = self._by_client.get(key)
        while own and len(own) >= self.per_client:
            evicted.append(self._evict(next(iter(own))))
        while len(self._items) >= self.capacity:
            while self._most > 0 and not self._by_count.get(self._most):
                self._most -= 1
            heaviest = self._by_client[next(iter(self._by_count[self._most]))]
            evicted.append(self._evict(next(iter(heaviest))))
        self._items[state] = pending
        own = self._by_client.setdefault(key, OrderedDict())
        self._recount(key, len(own), len(own) + 1)
        own[state] = None
        return evicted

    def take(self, state: str, binding: str | None) -> tuple[PendingSignIn | None, str]:
        """Remove and return the pending sign-in for ``state`` with a reason when refused.

        Reasons: ``ok``, ``state_unknown`` (never issued or already used), ``state_evicted``
        (pushed out by the bounds above), ``state_expired``, ``browser_mismatch``. A
        mismatched browser does not consume the entry, so a forged callback cannot cancel a
        real user's sign-in.
        """
        pending = self._items.get(state)
        if pending is None:
            return None, "state_evicted" if state in self._evicted else "state_unknown"
        if not binding or not hmac.compare_digest(binding_hash(binding), pending.binding_hash):
            return None, "browser_mismatch"
        self._remove(state)
        if self.clock() - pending.created >= self.ttl:
            return None, "state_expired"
        return pending, "ok"

    def _evict(self, state: str) -> PendingSignIn:
        pending = self._remove(state)
        self.evicted += 1
        self._evicted[state] = None
        while len(self._evicted) > self.capacity:
            self._evicted.popitem(last=False)
        return pending

    def _remove(self, state: str) -> PendingSignIn:
        pending = self._items.pop(state)
        key = client_key(pending.client)
        own = self._by_client[key]
        del own[state]
        self._recount(key, len(own) + 1, len(own))
        if not own:
            del self._by_client[key]
        return pending

    def _recount(self, key: str, old: int, new: int) -> None:
        if old:
            holders = self._by_count[old]
            del holders[key]
            if not holders:
                del self._by_count[old]
        if new:
            self._by_count.setdefault(new, OrderedDict())[key] = None
            self._most = max(self._most, new)

    def _purge(self) -> None:
        now = self.clock()
        while self._items:
            state, first = next(iter(self._items.items()))
            if now - first.created < self.ttl:
                break
            self._remove(state)
