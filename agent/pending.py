"""Pending sign-ins: server-side, bound to one browser, single use, short-lived, bounded.

A pending sign-in is the MSAL flow (PKCE verifier, state, nonce) plus where the user wants to
land. It is found by ``state`` and belongs to the browser that holds the binding cookie whose
hash it stores. The store holds at most ``capacity`` entries (oldest evicted) and admits at
most ``per_minute`` new sign-ins per client address.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
                 clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.per_minute = per_minute
        self.clock = clock
        self._items: OrderedDict[str, PendingSignIn] = OrderedDict()
        self._window_start = 0.0
        self._per_client: dict[str, int] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def admit(self, client: str) -> bool:
        """Count one sign-in start for ``client``; False once it exceeds its per-minute budget."""
        now = self.clock()
        if now - self._window_start >= 60 or len(self._per_client) > 100_000:
            self._window_start = now
            self._per_client.clear()
        count = self._per_client.get(client, 0) + 1
        self._per_client[client] = count
        return count <= self.per_minute

    def starts(self, client: str) -> int:
        """How many starts ``client`` made in the current one-minute window."""
        return self._per_client.get(client, 0)

    def add(self, state: str, pending: PendingSignIn) -> None:
        self._purge()
        while len(self._items) >= self.capacity:
            self._items.popitem(last=False)
            self.evicted += 1
        self._items[state] = pending

    def take(self, state: str, binding: str | None) -> tuple[PendingSignIn | None, str]:
        """Remove and return the pending sign-in for ``state`` with a reason when refused.

        Reasons: ``ok``, ``state_unknown`` (never issued, already used or evicted),
        ``state_expired``, ``browser_mismatch``. A mismatched browser does not consume the
        entry, so a forged callback cannot cancel a real user's sign-in.
        """
        pending = self._items.get(state)
        if pending is None:
            return None, "state_unknown"
        if not binding or not hmac.compare_digest(binding_hash(binding), pending.binding_hash):
            return None, "browser_mismatch"
        del self._items[state]
        if self.clock() - pending.created >= self.ttl:
            return None, "state_expired"
        return pending, "ok"

    def _purge(self) -> None:
        now = self.clock()
        while self._items:
            state, first = next(iter(self._items.items()))
            if now - first.created < self.ttl:
                break
            del self._items[state]
