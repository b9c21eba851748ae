"""Life after sign-in: Entra ID confirms every SSO session at least once per interval.

Each session that holds a refresh token is re-validated in the background at a random point
between 75 % and 87.5 % of its ``[session] revalidate_interval`` after the last one (sessions
created together do not stay together), a few at a time. The schedule is read in slices, a
pass every eighth of an interval: 100,000 sessions never hold the event loop for more than a
fraction of a millisecond per tick.

A re-validation redeems the refresh token through MSAL (SPA with the ``Origin`` header, Web
with the client credential), validates the new ID token like a sign-in's (no nonce; it must
name the same user), reads the names and groups again (Graph ``checkMemberGroups`` on
overage or when the token carries no groups) and decides the role again:

* no role → the session ends at once (``session_revoked``, reason ``no_role``, or
  ``no_app_role`` with ``[roles] source = "app_roles"``: the refreshed ID token's ``roles``
  claim no longer holds a mapped app role);
* the user is no longer allowed (``invalid_grant``: disabled, revoked, Conditional Access,
  consent withdrawn, the SPA's 24-hour limit ...) → ends at once, with the AADSTS code and
  what it means (``reasons.py``);
* the application is disabled or deleted in the tenant → ends (``application_refused``); the
  sensor's client credential is rejected → ends (``client_credential_rejected``, whose
  operator's line, once, with the fix, and ``/readyz`` are ``entra/answers.py``'s);
* another role → ``/auth/check`` answers with it from the next request on
  (``session_role_changed``);
* Entra ID or Graph unavailable (transport, 5xx, 429, ``temporarily_unavailable``, loop
  detection AADSTS50196: ``entra/answers.py``) → retried with backoff and after any
  ``Retry-After``; the store ends the session once it is ``revalidate_interval +
  revalidate_grace`` past its last confirmation (``revalidation_unavailable``);
* anything else raised → that session only is retried later; ``report`` tells the supervisor.

``/auth/check`` never waits for any of this: it reads what the last re-validation stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from ..backoff import doubling
from ..errors import ClientCredentialRejected, DependencyFailure, SignInRefused, SignInRejected
from ..roles import decide_role, no_role_reason
from ..sessions.store import Session, SessionStore
from .identity import IdentityProvider
from .reasons import aadsts_reason

audit = structlog.get_logger("agent.audit")

CONCURRENCY = 4  # refreshes in flight at once (each holds a thread while MSAL waits)
FIRST_RETRY = 10.0  # seconds after Entra ID first failed; doubles up to the interval
MAX_RETRY_AFTER = 3600.0
PASSES_PER_INTERVAL = 8  # the schedule is read through this often: never late by more
MIN_SLICE = 500  # sessions looked at per tick at least

Result = Literal["confirmed", "role_changed", "revoked", "unavailable", "rejected", "gone",
                 "failed"]


@dataclass
class Outcome:
    upn: str
    result: Result
    detail: str = ""


class Revalidator:
    """The background re-validation of SSO sessions (one per application)."""

    def __init__(self, idp: IdentityProvider, sessions: SessionStore, clock: Callable[[], float],
                 rng: random.Random | None = None,
                 report: Callable[[BaseException], None] | None = None) -> None:
        self.idp, self.settings = idp, idp.settings
        self.report = report  # one session's unexpected failure (the supervisor counts it)
        # Test hook: what it raises for a session is that session's re-validation failing.
        self.before_refresh: Callable[[Session], None] | None = None
        self.sessions = sessions
        self.clock = clock
        self.interval = self.settings.session.revalidate_interval
        self.tick = min(1.0, self.interval / 10)  # real seconds between looks at the schedule
        self.rng = rng or random.Random()  # noqa: S311 - spreads a schedule, no secret
        self.paused_until = 0.0  # Entra ID unavailable or asked to wait (clock time)
        self._outages = 0  # consecutive unavailable answers: the pause doubles with each
        self._unavailable_since: float | None = None
        self._in_flight: set[bytes] = set()
        self._pass: tuple[bytes, ...] = ()  # the session keys of the current pass ...
        self._next = 0  # ... and where its next slice starts
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.outcomes: Counter[str] = Counter()  # by Outcome.result (the metrics share theirs)
        self.answered_at: float | None = None  # when Entra ID last answered a refresh
        self._oldest: float | None = None  # the oldest confirmation seen by the last pass ...
        self._oldest_this_pass: float | None = None  # ... and by this one

    # ----- schedule -----------------------------------------------------------------------

    def _schedule(self, session: Session, after: float) -> None:
        """Next look at 75-87.5 % of an interval from ``after``: spread, and with a pass
        through the schedule every eighth of an interval, never later than the interval."""
        session.next_revalidation = after + self.interval * self.rng.uniform(
            0.75, 1 - 1 / PASSES_PER_INTERVAL)

    def due(self, now: float) -> list[Session]:
        """The due sessions in this tick's slice of the current pass."""
        if self._next >= len(self._pass):
            # The pass holds keys (bytes) in a tuple, not sessions in a list: after one
            # collection the collector stops walking it (100,000 entries, each pass).
            self._pass, self._next = self.sessions.keys(), 0
            self._oldest, self._oldest_this_pass = self._oldest_this_pass, None
        ticks_per_pass = max(1.0, self.interval / PASSES_PER_INTERVAL / self.tick)
        size = max(MIN_SLICE, int(len(self._pass) / ticks_per_pass) + 1)
        part = self._pass[self._next:self._next + size]
        self._next += size
        found = []
        oldest = self._oldest_this_pass
        for key in part:
            session = self.sessions.by_key(key)
            if session is None or not session.has_refresh_token or key in self._in_flight:
                continue
            oldest = session.revalidated if oldest is None else min(oldest, session.revalidated)
            if not session.next_revalidation:
                self._schedule(session, session.revalidated)
            if session.next_revalidation <= now:
                found.append(session)
        self._oldest_this_pass = oldest
        found.sort(key=lambda s: s.next_revalidation)
        return found

    def lag(self) -> float:
        """Seconds since the least recently confirmed SSO session was (last pass; 0: none)."""
        oldest = self._oldest if self._oldest is not None else self._oldest_this_pass
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def wake(self) -> None:
        """Look at the schedule now (after the clock moved, or a reload)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)  # re-validations under way

    async def look(self) -> None:
        """Re-validate what is due now (unless paused); return once those answers are in."""
        if self.idp.tenant.ready and self.clock() >= self.paused_until and \
                (due := self.due(self.clock())):
            await self._run(due, forced=False)

    async def run(self) -> None:
        """Forever: re-validate whatever is due, then wait a tick (or a ``wake``)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            self._wake.clear()
            await self.look()

    async def revalidate_now(self, upn: str | None = None) -> list[Outcome]:
        """Re-validate every session (or one user's) at once, waiting for the answers."""
        wanted = upn.casefold() if upn else None
        chosen = [s for s in self.sessions.live() if s.has_refresh_token
                  and s.key not in self._in_flight
                  and (wanted is None or s.upn.casefold() == wanted)]
        return await self._run(chosen, forced=True)

    async def recheck(self, sessions: list[Session]) -> None:
        """Re-validate ``sessions`` as soon as the tenant's keys are loaded (a reload changed
        ``[roles] source``: their stored groups or app roles say nothing under the new one)."""
        await self.idp.tenant.wait_ready()
        audit.info("roles_source_changed", source=self.settings.roles_source,
                   sessions=len(sessions))
        await self._run([s for s in sessions if self.sessions.is_live(s)], forced=True)

    async def _run(self, chosen: list[Session], forced: bool) -> list[Outcome]:
        tasks: list[asyncio.Task[Outcome]] = []
        for session in chosen:
            await self._slots.acquire()
            if not forced and self.clock() < self.paused_until:
                self._slots.release()  # Entra ID failed meanwhile: the rest wait their turn
                break
            if not self.sessions.is_live(session) or session.key in self._in_flight:
                self._slots.release()
                continue
            self._in_flight.add(session.key)
            tasks.append(asyncio.create_task(self._one(session)))
        outcomes = list(await asyncio.gather(*tasks))
        self.outcomes.update(o.result for o in outcomes)
        return outcomes

    async def _one(self, session: Session) -> Outcome:
        try:
            return await self.revalidate(session)
        except Exception as exc:  # a defect or an answer nobody foresaw: never the whole pass
            self._retry_later(session)
            if self.report is not None:
                self.report(exc)  # task_failed (once per burst), /readyz, the failure count
            return Outcome(session.upn, "failed", type(exc).__name__)
        finally:
            self._in_flight.discard(session.key)
            self._slots.release()

    # ----- one session ----------------------------------------------------------------------

    async def revalidate(self, session: Session) -> Outcome:
        """Refresh, validate, re-read, re-decide; returns what happened."""
        metadata = self.idp.tenant.metadata
        if metadata is None:
            return Outcome(session.upn, "unavailable", "Entra ID metadata not loaded")
        if self.before_refresh is not None:
            self.before_refresh(session)
        token = await self.sessions.refresh_token(session)
        if token is None:  # its journal line cannot be read now: try again later
            self._retry_later(session)
            return Outcome(session.upn, "unavailable", "refresh token not readable")
        try:
            redemption = await asyncio.to_thread(self.idp.client.refresh, token)
            claims = await self.idp.validate(redemption.id_token, metadata, None, self.clock())
            if str(claims.get("oid", claims["sub"])) != session.oid or \
                    (session.sub and claims["sub"] != session.sub):
                return await self._end(session, "identity_changed",
                                       "the refreshed ID token names another user")
            profile, groups = await self.idp.identity(claims, redemption.access_token)
        except DependencyFailure as exc:  # nothing about the user: try again later, unless
            if isinstance(exc, ClientCredentialRejected):  # no session can be confirmed
                return await self._end(session, exc.reason, f"{exc.detail}: {exc.fix}",
                                       aadsts=exc.aadsts)  # logged once, in /readyz: client.py
            return self._unavailable(session, exc)
        except SignInRefused as exc:
            if exc.reason == "invalid_grant":
                return await self._end(session, "invalid_grant", aadsts_reason(exc.aadsts),
                                       aadsts=exc.aadsts)
            if exc.reason == "wrong_tenant":
                return await self._end(session, "identity_changed", exc.detail)
            return await self._end(session, exc.reason, exc.detail, aadsts=exc.aadsts)
        except SignInRejected as exc:  # an ID token that does not validate: confirms nothing
            audit.error("session_revalidation_rejected", upn=session.upn, reason=exc.reason,
                        detail=exc.detail)
            self._retry_later(session)
            return Outcome(session.upn, "rejected", exc.reason)
        if not self.sessions.is_live(session):
            return Outcome(session.upn, "gone")
        decision = decide_role(groups, self.settings.roles, self.settings.roles_source)
        if decision.role is None:
            return await self._end(session, *no_role_reason(self.settings.roles_source))
        self._recovered()
        now = self.clock()
        if redemption.refresh_token and redemption.refresh_token != token:
            self.sessions.replace_refresh_token(session, redemption.refresh_token)
        # The UPN stays the one of the sign-in: the store indexes sessions by it (a renamed
        # user shows the new UPN from the next sign-in on). Names follow the directory.
        session.given_name = profile["given_name"]
        session.family_name = profile["family_name"]
        before = self.sessions.apply_role(session, decision.role.id, decision.matched_groups)
        session.revalidated = now
        session.failures = 0
        self._schedule(session, now)
        self.sessions.changed(session)
        if before is not None:
            audit.warning("session_role_changed", upn=session.upn, oid=session.oid,
                          **{"from": before, "to": session.role}, via="revalidation")
            return Outcome(session.upn, "role_changed", f"{before} → {session.role}")
        return Outcome(session.upn, "confirmed")

    async def _end(self, session: Session, reason: str, detail: str,
                   aadsts: object = None) -> Outcome:
        self._recovered()  # Entra ID answered
        await self.sessions.end(session, reason, detail=detail, aadsts=aadsts, via="revalidation")
        return Outcome(session.upn, "revoked", reason)

    def _unavailable(self, session: Session, exc: DependencyFailure) -> Outcome:
        now = self.clock()
        if self._unavailable_since is None:
            self._unavailable_since = now
            audit.warning("revalidation_unavailable", reason=exc.reason, detail=exc.detail,
                          dependency=exc.dependency,
                          sessions_kept_until="last confirmation + revalidate_interval + "
                                              "revalidate_grace")
        self._outages += 1
        wait = doubling(self._outages, FIRST_RETRY, self.interval)
        if exc.retry_after is not None and exc.retry_after > 0:
            wait = max(wait, min(exc.retry_after, MAX_RETRY_AFTER))
        self.paused_until = max(self.paused_until, now + wait)
        self._retry_later(session, wait)
        return Outcome(session.upn, "unavailable", exc.detail)

    def _retry_later(self, session: Session, wait: float | None = None) -> None:
        session.failures += 1
        session.next_revalidation = self.clock() + (
            doubling(session.failures, FIRST_RETRY, self.interval) if wait is None else wait)

    def _recovered(self) -> None:
        self.answered_at = self.clock()
        if self._unavailable_since is not None:
            audit.info("revalidation_recovered", unavailable_for=round(
                self.clock() - self._unavailable_since, 1))
            self._unavailable_since = None
        self._outages = 0
