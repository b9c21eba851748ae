"""The sign-in, step by step, away from HTTP: start → callback → validated identity → session.

``SignIn.start`` creates a pending sign-in bound to the browser and returns the authorization
URL. ``SignIn.complete`` checks the authorization response (state, browser binding, RFC 9207
``iss``, ``error=``), redeems the code through MSAL off the event loop, validates the ID token,
gathers the required attributes and groups (``identity.py``: Graph when the token lacks them),
decides the role and stores a new session. Every refusal raises a ``ReasonedError`` (see
agent/errors.py) with a reason code and is written to the audit log.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from multidict import MultiMapping

from ..entra.client import aadsts_code, nonce_hash
from ..errors import (
    ConfigurationProblem,
    IdentityProviderUnavailable,
    MissingAttributes,
    ReasonedError,
    SignInRefused,
    SignInRejected,
    StateUnwritable,
    TooManySignIns,
)
from ..logging import AuditBursts
from ..roles import decide_role, no_role_reason
from ..sessions.store import Session, SessionStore
from ..urlpaths import local_path
from .health import DependencyHealth
from .identity import IdentityProvider, strings
from .pending import PendingSignIn, PendingSignIns, binding_hash

audit = structlog.get_logger("agent.audit")

_MAX_PARAM = 4096
_MAX_QUERY = 8192


@dataclass(frozen=True)
class Started:
    authorize_url: str
    binding: str


@dataclass(frozen=True)
class Completed:
    cookie_id: str
    session: Session
    next_path: str


class SignIn:
    """The SSO sign-in; ``health`` (what offers the local form) and ``bursts`` (audit floods
    as summaries) are the application's, shared with the local sign-in."""

    def __init__(self, idp: IdentityProvider, pending: PendingSignIns, sessions: SessionStore,
                 clock: Callable[[], float], health: DependencyHealth,
                 bursts: AuditBursts) -> None:
        self.idp, self.settings = idp, idp.settings
        self.health = health
        self.bursts = bursts
        self.pending = pending
        self.sessions = sessions
        self.clock = clock

    def safe_next(self, next_path: object) -> str:
        """``next_path`` in its canonical local form, else ``post_login_path``."""
        return local_path(next_path) or self.settings.server.post_login_path

    def authorize_extras(self, login_hint: object = None,
                         after_sign_out: bool = False) -> dict[str, Any]:
        """Hints, ``prompt`` and the auth-context claims request for MSAL's
        ``initiate_auth_code_flow``. After a sign-out from this browser the user picks the
        account (shared workstations: Entra's own session would sign in the previous user),
        and no ``login_hint`` goes with ``prompt=select_account``: Entra's OpenID Connect
        reference says they cannot be used together, and a hint would name the previous
        user's account to the next one."""
        entra = self.settings.entra
        extra: dict[str, Any] = {}
        prompt = entra.prompt
        if after_sign_out and prompt != "login":
            prompt = "select_account"
        if prompt:
            extra["prompt"] = prompt
        hint = login_hint if hint_ok(login_hint) else entra.login_hint
        if hint and prompt != "select_account":
            extra["login_hint"] = hint
        if entra.domain_hint:
            extra["domain_hint"] = entra.domain_hint
        if entra.require_auth_context:
            wanted = {"acrs": {"essential": True, "value": entra.require_auth_context}}
            extra["claims_challenge"] = json.dumps({"id_token": wanted, "access_token": wanted})
        return extra

    async def start(self, next_path: object, client: str, binding: str | None,
                    login_hint: object = None, after_sign_out: bool = False) -> Started:
        try:
            return await self._start(next_path, client, binding, login_hint, after_sign_out)
        except TooManySignIns:  # audited (as a burst) where it is decided
            raise
        except ReasonedError as exc:
            self._refused(exc, client)
            raise

    async def _start(self, next_path: object, client: str, binding: str | None,
                     login_hint: object, after_sign_out: bool) -> Started:
        if self.settings.sso_off:
            raise SignInRefused("sso_off", "single sign-on is off for this sensor: "
                                + (self.settings.sso_off_reason or ""))
        if not self.pending.admit(client):
            refused = TooManySignIns()
            self.bursts.event("warning", "sso_login_refused", client, reason=refused.reason,
                              status=refused.status)
            raise refused
        if not self.idp.tenant.ready:
            why = self.idp.tenant.not_ready_reason or "not ready"
            if misconfigured := self.idp.tenant.misconfigured:  # e.g. 90002: a wrong tenant
                raise ConfigurationProblem("idp_misconfigured", why, dependency="Entra ID",
                                           aadsts=misconfigured)
            raise IdentityProviderUnavailable("idp_not_ready", why, dependency="Entra ID")
        if not self.idp.client.loaded:
            await asyncio.to_thread(self.idp.client.app)
        flow = self.idp.client.start(**self.authorize_extras(login_hint, after_sign_out))
        if self.settings.entra.max_age is not None:
            # Not through MSAL: it checks auth_time against the wall clock and reports a
            # stale sign-in as a nonce error. The agent checks auth_time itself (complete).
            flow["auth_uri"] += "&" + urlencode({"max_age": int(self.settings.entra.max_age)})
        if binding is None or not (20 <= len(binding) <= 64) or not binding.isascii():
            binding = secrets.token_urlsafe(32)
        target = self.safe_next(next_path)
        for gone in self.pending.add(flow["state"], PendingSignIn(
                flow=flow, binding_hash=binding_hash(binding), next_path=target,
                created=self.clock(), client=client)):
            self.bursts.event("warning", "state_evicted", gone.client,
                              age_s=round(self.clock() - gone.created, 1))
        self.bursts.event("info", "sso_login_started", client, next=target)
        return Started(authorize_url=flow["auth_uri"], binding=binding)

    async def complete(self, query: Mapping[str, str] | MultiMapping[str], binding: str | None,
                       client: str) -> Completed:
        """Finish the sign-in from the callback's query (repeated parameters are refused)."""
        try:
            done = await self._complete(single_valued(query), binding, client)
        except ReasonedError as exc:
            self._refused(exc, client)
            raise
        self.health.sign_in_succeeded()  # every dependency answered this sign-in
        return done

    def _refused(self, exc: ReasonedError, client: str) -> None:
        """Audit a refused sign-in; a transport failure counts for Entra ID's availability
        (health.py: never what the token endpoint or Graph answered to this sign-in)."""
        if isinstance(exc, IdentityProviderUnavailable):
            self.health.sign_in_failed(exc)
        if exc.aadsts or exc.reason == "idp_error":
            self.bursts.event("warning", "idp_error", client, reason=exc.reason,
                              aadsts=exc.aadsts, error=exc.provider_error)
        fields: dict[str, object] = {"oid": exc.oid} if exc.oid else {}
        if isinstance(exc, MissingAttributes):
            fields["missing"] = list(exc.missing)
        self.bursts.event("warning", "sso_login_refused", client, reason=exc.reason,
                          status=exc.status, upn=exc.upn, **fields)

    async def _complete(self, params: Mapping[str, str], binding: str | None,
                        client: str) -> Completed:
        state = params.get("state")
        if not state or len(state) > _MAX_PARAM:
            raise SignInRejected("state_missing", "the sign-in response carries no state")
        pending, why = self.pending.take(state, binding)
        if pending is None:
            raise SignInRejected(why, {
                "state_unknown": "this sign-in response is unknown or was already used",
                "state_evicted": "too many sign-ins were started at once and this one was "
                                 "dropped",
                "state_expired": "the sign-in took too long",
                "browser_mismatch": "this sign-in was started in another browser",
            }[why])
        metadata = self.idp.tenant.metadata
        if metadata is None:
            raise IdentityProviderUnavailable("idp_not_ready", "Entra ID metadata not loaded",
                                              dependency="Entra ID")
        iss = params.get("iss")
        if iss is not None and not hmac.compare_digest(iss.encode(), metadata.issuer.encode()):
            raise SignInRejected("iss_mismatch", "the sign-in response names another issuer")
        if iss is None and metadata.iss_parameter_supported:
            raise SignInRejected("iss_missing", "the sign-in response does not name its issuer")
        if "error" in params:
            error = params["error"][:64]
            code = aadsts_code(params.get("error_description", "")[:_MAX_PARAM])
            raise SignInRefused("idp_error", f"Entra ID answered {error}",
                                provider_error=error, aadsts=code)
        code = params.get("code")
        if not code or len(code) > _MAX_PARAM:
            raise SignInRejected("code_missing", "the sign-in response carries no code")
        response = {"state": state, "code": code}
        redemption = await asyncio.to_thread(self.idp.client.redeem, pending.flow, response)
        claims = await self.idp.validate(redemption.id_token, metadata,
                                           nonce_hash(pending.flow), self.clock())
        try:
            self.idp.check_step_up(claims, self.clock())
            profile, groups = await self.idp.identity(claims, redemption.access_token)
        except SignInRefused as exc:  # a genuine identity: the audit line names its object id
            if exc.oid is None:
                exc.oid = _short_text(claims.get("oid"))
            raise
        decision = decide_role(groups, self.settings.roles, self.settings.roles_source)
        if decision.role is None:
            reason, detail = no_role_reason(self.settings.roles_source)
            raise SignInRefused(reason, detail, upn=profile["upn"],
                                oid=_short_text(claims.get("oid")))
        cookie_id, session = self.sessions.new_session(
            upn=profile["upn"], given_name=profile["given_name"],
            family_name=profile["family_name"], oid=str(claims.get("oid", claims["sub"])),
            role=decision.role.id, groups=list(decision.matched_groups),
            auth_time=float(claims.get("auth_time", claims["iat"])),
            amr=strings(claims.get("amr")), acrs=strings(claims.get("acrs")),
            sub=str(claims["sub"]), sid=_short_text(claims.get("sid")),
            refresh_token=redemption.refresh_token)
        try:
            await self.sessions.put(session)
        except StateUnwritable as exc:  # the account was accepted: the audit line names it
            exc.upn = session.upn
            raise
        audit.info("sso_login_succeeded", upn=session.upn, oid=session.oid, role=session.role,
                   groups_matched=list(decision.matched_groups), source_ip=client,
                   amr=list(session.amr) or None, acrs=list(session.acrs) or None)
        return Completed(cookie_id=cookie_id, session=session, next_path=pending.next_path)


def single_valued(query: Mapping[str, str] | MultiMapping[str]) -> dict[str, str]:
    """The callback parameters, refusing oversized responses and repeated parameters."""
    items = list(query.items())
    if sum(len(k) + len(v) + 2 for k, v in items) > _MAX_QUERY:
        raise SignInRejected("response_too_large", "the sign-in response is too large")
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            raise SignInRejected("duplicate_parameter",
                                 "the sign-in response repeats a parameter")
        params[key] = value
    return params


def hint_ok(value: object) -> bool:
    """A login hint worth passing on: a short printable string."""
    return isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable()


def _short_text(value: object) -> str | None:
    """An identifier claim worth keeping (``sid``): a short printable string."""
    return value if isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() \
        else None
