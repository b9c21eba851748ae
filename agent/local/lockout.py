"""The lockout policy of local sign-in: who may have a password checked, and when.

Local accounts exist for the outage that takes Entra ID away, so a lockout that anyone can
keep in force would defeat them (issue 23, 4). The policy, and why (docs/security.md,
"Local accounts: the lockout policy"):

* **Per client** (an address; an IPv6 /64): 20 free failures across all names, then doubling
  delays up to 15 minutes; forgotten 15 minutes after the client's last failure.
* **Per account**: 5 free failures, then doubling delays up to 15 minutes, kept until a
  successful sign-in (never forgotten by waiting). Accounts in the file have a table of their
  own; names that are no account share a bounded table of 10,000 (oldest dropped), so name
  spraying cannot evict a locked account's counter. Both follow the same rules, so the
  answers do not tell which names exist.
* **Counted before the check**: an attempt counts as a failure before its password is
  hashed, so concurrent attempts cannot all slip in under the last free failure; a success
  takes it back.
* **A locked account, a clean client**: while an account is locked, a client with no
  failures of its own on record has its password checked anyway, after a fixed
  ``locked_check_delay`` and one such check per account at a time (at most
  ``MAX_LOCKED_CHECKS`` queued). The right password signs in (and clears the account's
  failures); a wrong one counts for the client and the account like any other. So an
  attacker who keeps ``breakglass`` locked does not keep the operator out, and gets one
  guess per address per 15 minutes, one every ``locked_check_delay`` at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .throttle import FailureThrottle

FAILURES_FREE_PER_ACCOUNT = 5
FAILURES_FREE_PER_CLIENT = 20
LOCKED_CHECK_DELAY = 2.0  # s before a clean client's password is checked on a locked account
MAX_LOCKED_CHECKS = 4  # clean-client checks queued per locked account


@dataclass(frozen=True)
class Verdict:
    """``matched``: the right password. Otherwise ``checked`` says whether the password was
    looked at; ``retry_after`` is the wait a refusal asks for, or the lockout a wrong
    password started (0: none)."""

    matched: bool
    checked: bool
    retry_after: float


class Lockout:
    def __init__(self, clock: Callable[[], float],
                 locked_check_delay: float = LOCKED_CHECK_DELAY) -> None:
        self.accounts = FailureThrottle(clock, free=FAILURES_FREE_PER_ACCOUNT, forget=None,
                                        capacity=None)
        self.names = FailureThrottle(clock, free=FAILURES_FREE_PER_ACCOUNT, forget=None)
        self.clients = FailureThrottle(clock, free=FAILURES_FREE_PER_CLIENT)
        self.locked_check_delay = locked_check_delay
        self._queued: dict[str, int] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    async def attempt(self, name: str, known: bool, client: str,
                      check: Callable[[], Awaitable[bool]]) -> Verdict:
        """Run ``check`` (the password check) if the policy lets ``client`` try ``name``."""
        table = self.accounts if known else self.names
        client_wait, name_wait = self.clients.wait(client), table.wait(name)
        if client_wait > 0:
            return Verdict(False, False, max(client_wait, name_wait))
        if name_wait > 0:
            if self.clients.failures(client) or \
                    self._queued.get(name, 0) >= MAX_LOCKED_CHECKS:
                return Verdict(False, False, name_wait)
            return await self._locked_check(table, name, client, check)
        lockout = max(table.count(name), self.clients.count(client))
        return self._settle(table, name, client, await self._checked(
            table, name, client, check), lockout)

    async def _locked_check(self, table: FailureThrottle, name: str, client: str,
                            check: Callable[[], Awaitable[bool]]) -> Verdict:
        self.clients.count(client)  # no longer clean, whatever the outcome
        self._queued[name] = self._queued.get(name, 0) + 1
        turn = self._turns.setdefault(name, asyncio.Lock())
        try:
            async with turn:
                await asyncio.sleep(self.locked_check_delay)
                lockout = table.count(name)
                matched = await self._checked(table, name, client, check)
        finally:
            self._queued[name] -= 1
            if not self._queued[name]:
                del self._queued[name], self._turns[name]
        return self._settle(table, name, client, matched, lockout)

    async def _checked(self, table: FailureThrottle, name: str, client: str,
                       check: Callable[[], Awaitable[bool]]) -> bool:
        """``check()``; an attempt that raises (too busy to check) was no failure."""
        try:
            return await check()
        except Exception:
            table.refund(name)
            self.clients.refund(client)
            raise

    def _settle(self, table: FailureThrottle, name: str, client: str, matched: bool,
                lockout: float) -> Verdict:
        if matched:
            table.succeeded(name)
            self.clients.refund(client)
            return Verdict(True, True, 0.0)
        return Verdict(False, True, lockout)
