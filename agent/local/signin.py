"""Local sign-in, away from HTTP: when the form is offered, login CSRF, the sign-in itself.

* ``offered``: with ``[local] sign_in = "when-sso-unavailable"`` the form is offered only while
  SSO is off for this sensor, the tenant's metadata is not loaded, or an Entra ID dependency
  is unavailable (``signin/health.py``: the agent's own probes and transport failures only,
  the same as ``/readyz``'s ``degraded``) — and only
  when at least one account exists. A sign-in posted while the form is not offered is refused.
* Login CSRF: before any session exists the sign-in page sets a random ``__Host-`` cookie and
  puts ``HMAC(key, cookie)`` in a hidden field (double submit, signed with a key of this
  process); the POST must carry both.
* The same work and the same answer for an unknown name as for a wrong password (a dummy
  hash is checked), growing delays per account name and per client under the lockout policy
  of ``lockout`` (clients keyed like every per-client limit, ``clientaddr.client_key``: an
  IPv6 client is its /64), and ``hmac.compare_digest`` for every comparison.
* The session is an ordinary session (same cookie, timeouts, ``/auth/check``, sign-out) with
  ``method = "local"``; its ``upn`` is the account name (never contains ``@``) and its ``oid``
  the account's ``id``, which changes with the role or password: ``stale`` names the local
  sessions a reload must end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from ..clientaddr import client_key
from ..entra.discovery import TenantMetadata
from ..errors import SignInRefused, StateUnwritable
from ..logging import AuditBursts
from ..sessions.store import Session, SessionStore
from ..settings import Settings
from ..signin.flow import Completed
from ..signin.health import DependencyHealth
from ..urlpaths import local_path
from .accounts import Account, AccountsError, read_accounts
from .lockout import Lockout
from .passwords import CONCURRENT_HASHES, dummy_hash, verify_password

audit = structlog.get_logger("agent.audit")

CSRF_COOKIE = "__Host-local_signin"
MAX_WAITING = 16  # sign-ins queued for a hash before more are told to wait
_MAX_NAME = 64
_MAX_PASSWORD = 1024


class LocalSignInRefused(SignInRefused):
    """A local sign-in that did not produce a session; ``status`` and ``retry_after`` say
    how the page answers (401 wrong name or password, 403 form not offered or CSRF, 429
    throttled, 503 session state cannot be written). For the audit log, a wrong password
    carries ``why`` and the account ``name``; an unknown name only ``why``."""

    def __init__(self, reason: str, status: int, detail: str = "",
                 retry_after: int | None = None, why: str | None = None,
                 name: str | None = None) -> None:
        super().__init__(reason, detail)
        self.status = status
        self.retry_after = retry_after
        self.why = why
        self.name = name


@dataclass
class LocalAccounts:
    """The accounts the agent read at start (or reload); ``problem`` when it could not."""

    accounts: dict[str, Account] = field(default_factory=dict)
    problem: str | None = None

    @classmethod
    def load(cls, settings: Settings) -> LocalAccounts:
        """Read ``[local] accounts_file`` (blocking); an unusable file means no accounts."""
        if settings.local.sign_in == "never":
            return cls()
        try:
            return cls(read_accounts(settings.local.accounts_file))
        except AccountsError as exc:
            return cls(problem=str(exc))

    def __len__(self) -> int:
        return len(self.accounts)


def describe_local(settings: Settings) -> tuple[list[str], list[str]]:
    """``check-config``'s notes and warnings about local sign-in (reads the accounts file)."""
    policy, path = settings.local.sign_in, settings.local.accounts_file
    if policy == "never":
        return ['local sign-in: off (local.sign_in = "never")'], []
    accounts = LocalAccounts.load(settings)
    if accounts.problem:
        return [], [f"local accounts unusable, so no local sign-in: {accounts.problem}"]
    if not accounts.accounts:
        return [f"local sign-in: no accounts in {path} (sensor-sso-agent local-user add)"], []
    when = "beside SSO" if policy == "always" else \
        "while Entra ID cannot be reached or SSO is off"
    count = len(accounts)
    return [f"local sign-in: {count} account{'s' if count != 1 else ''} in {path}, "
            f"offered {when}"], []


class LocalSignIn:
    def __init__(self, settings: Settings, tenant: TenantMetadata, health: DependencyHealth,
                 bursts: AuditBursts, sessions: SessionStore,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.tenant = tenant
        self.health = health  # Entra ID's availability: what offers the form
        self.bursts = bursts  # the application's, shared with the SSO sign-in
        self.sessions = sessions
        self.clock = clock
        self.accounts = LocalAccounts()
        self.lockout = Lockout(clock)
        self._csrf_key = secrets.token_bytes(32)
        self._hashing = asyncio.Semaphore(CONCURRENT_HASHES)
        self._waiting = 0

    async def load(self) -> None:
        """Read the accounts (off the event loop) and end the sessions they no longer back."""
        self.accounts = await asyncio.to_thread(LocalAccounts.load, self.settings)
        if self.accounts.problem:
            audit.error("local_accounts_unusable", problem=self.accounts.problem,
                        fix="sensor-sso-agent local-user list shows what is wrong")
        elif self.settings.local.sign_in != "never":
            audit.info("local_accounts_loaded", accounts=len(self.accounts),
                       sign_in=self.settings.local.sign_in)
        if self.accounts.accounts:
            await asyncio.to_thread(dummy_hash)  # now, not during someone's first sign-in
        for session in self.sessions.live():
            why = self.stale(session)
            if why is not None:  # ended in memory even when the disk is full (see end())
                await self.sessions.end(session, why, method="local")

    def stale(self, session: Session) -> str | None:
        """Why a local session must end now (its account is gone or changed), else None."""
        if session.method != "local":
            return None
        account = self.accounts.accounts.get(session.upn)
        if account is None:
            return "local_account_removed"
        if not hmac.compare_digest(account.id, session.oid) or account.role != session.role:
            return "local_account_changed"
        return None

    def offered(self) -> str | None:
        """Why the sign-in page offers the form now (``always``, ``sso_off``,
        ``sso_unavailable``), or None when it does not."""
        policy = self.settings.local.sign_in
        if policy == "never" or not self.accounts.accounts:
            return None
        if policy == "always":
            return "always"
        if self.settings.sso_off:
            return "sso_off"
        if not self.tenant.ready or self.health.degraded():
            return "sso_unavailable"
        return None

    # ----- login CSRF -------------------------------------------------------------------

    def csrf_pair(self, cookie: str | None) -> tuple[str, str]:
        """The pre-session cookie (kept when it looks like ours) and its form token."""
        if cookie is None or not (32 <= len(cookie) <= 64) or not cookie.isascii():
            cookie = secrets.token_urlsafe(32)
        return cookie, self._csrf_token(cookie)

    def _csrf_token(self, cookie: str) -> str:
        return hmac.new(self._csrf_key, b"local-sign-in:" + cookie.encode(),
                        hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or len(cookie) > 64 or len(token) != 64 \
                or not cookie.isascii() or not token.isascii():
            return False
        return hmac.compare_digest(token.encode(), self._csrf_token(cookie).encode())

    # ----- the sign-in ------------------------------------------------------------------

    async def sign_in(self, form: Mapping[str, str], csrf_cookie: str | None,
                      client: str) -> Completed:
        try:
            return await self._sign_in(form, csrf_cookie, client)
        except LocalSignInRefused as exc:  # a flood becomes summaries (audit_burst)
            self.bursts.event("warning", "local_login_refused", client,
                                  reason=exc.reason, status=exc.status,
                                  **{k: v for k, v in (("why", exc.why), ("name", exc.name))
                                     if v is not None})
            raise

    async def _sign_in(self, form: Mapping[str, str], csrf_cookie: str | None,
                       client: str) -> Completed:
        if self.offered() is None:
            raise LocalSignInRefused("local_sign_in_unavailable", 403,
                                     "sign-in with a local account is not offered now")
        if not self.csrf_ok(csrf_cookie, form.get("csrf_token")):
            raise LocalSignInRefused("csrf_invalid", 403, "the sign-in form has expired")
        name = form.get("username", "").strip().lower()[:_MAX_NAME]
        password = form.get("password", "")[:_MAX_PASSWORD]
        account = self.accounts.accounts.get(name)
        verdict = await self.lockout.attempt(name, account is not None, client_key(client),
                                             lambda: self._verify(account, password))
        if not verdict.checked:
            raise LocalSignInRefused("throttled", 429, "too many failed sign-ins",
                                     retry_after=math.ceil(verdict.retry_after))
        if not verdict.matched or account is None:
            # The audit log tells the two apart; the answer does not. An unknown name is not
            # logged: it may be a password typed into the wrong field.
            known = account is not None
            raise LocalSignInRefused("bad_credentials", 401, "wrong user name or password",
                                     retry_after=math.ceil(verdict.retry_after) or None,
                                     why="wrong_password" if known else "unknown_account",
                                     name=name if known else None)
        cookie_id, session = self.sessions.new_session(
            upn=account.name, given_name=account.given_name, family_name=account.family_name,
            oid=account.id, role=account.role, groups=[], auth_time=self.clock(),
            method="local")
        try:
            await self.sessions.put(session)
        except StateUnwritable as exc:
            raise LocalSignInRefused("state_unwritable", 503, exc.detail) from exc
        audit.info("local_login_succeeded", name=account.name, role=account.role,
                   source_ip=client)
        return Completed(cookie_id=cookie_id, session=session,
                         next_path=local_path(form.get("next"))
                         or self.settings.server.post_login_path)

    async def _verify(self, account: Account | None, password: str) -> bool:
        """Check ``password`` (against a dummy hash for an unknown name) off the event loop."""
        if self._waiting >= MAX_WAITING:
            raise LocalSignInRefused("busy", 429, "too many sign-ins at once", retry_after=1)
        self._waiting += 1
        try:
            async with self._hashing:
                stored = account.password_hash if account is not None else dummy_hash()
                matches = await asyncio.to_thread(verify_password, stored, password)
        finally:
            self._waiting -= 1
        return matches and account is not None
