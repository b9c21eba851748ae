"""The application factory: settings in, aiohttp application out. No module-level state.

Resources live in ``cleanup_ctx``: the outbound HTTP client, the session store (restored from
``state_dir``), the tenant's discovery document and keys (loaded in the background and
retried until they are, so the agent serves ``/healthz`` and existing sessions while Entra ID
is unreachable), and the periodic session flush.

Every background task runs under the application's ``Supervisor`` (agent/supervisor.py,
``app[keys.SUPERVISOR]``), by these names: ``journal_flush`` (flush and sweeps of the session
store), ``audit_bursts``, ``tenant_metadata`` (discovery and JWKS), ``revalidation``,
``roles_recheck`` (once, after ``[roles] source`` changed) and ``entra_probe`` (Entra ID's
reachability, for the local sign-in form). At shutdown the tasks
are stopped first; whatever they raise then is logged, and the final flush always runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from aiohttp import web

from ..backoff import doubling
from ..clientaddr import ProxyTrust
from ..entra.client import EntraClient
from ..entra.discovery import TenantMetadata
from ..entra.graph import GraphClient
from ..entra.outbound import Outbound
from ..errors import DependencyFailure
from ..local.signin import LocalSignIn
from ..logging import AuditBursts
from ..metrics.tally import AgentMetrics
from ..roles import no_role_reason
from ..sessions.journal import StateDirUnsafe
from ..sessions.store import Session, SessionStore
from ..settings import Settings
from ..signin.flow import SignIn
from ..signin.health import DependencyHealth
from ..signin.identity import IdentityProvider
from ..signin.pending import PendingSignIns
from ..signin.revalidation import Revalidator
from ..signin.warmup import MsalWarmUp
from ..supervisor import Supervisor
from . import check, handlers, keys
from .frontchannel import FRONTCHANNEL_LOGOUT_PATH, frontchannel_logout
from .health import healthz, readyz
from .local import local_sign_in
from .middlewares import guarded, security_header_set, security_headers
from .refusal_pages import REFUSAL_PAGES, REFUSED_PATH, RefusalPages, refused
from .refusals import RefusalAudit

log = structlog.get_logger("agent.web")

STATIC = Path(__file__).parent / "static"
KEY_REFRESH_INTERVAL = 3600.0
FLUSH_INTERVAL = 2.0
SWEEP_EVERY = 15  # flushes per sweep of every session; expired ones are refused at lookup
SWEEP_SLICE_MIN = 1000  # sessions swept per flush at least
PROBE_INTERVAL = 30.0
FREEZE_AT = 1000  # restored sessions from which the collector is told to leave them alone


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               console: bool = False, persist: bool = True,
               probe_interval: float = PROBE_INTERVAL,
               metrics: AgentMetrics | None = None) -> web.Application:
    """Build the agent. ``console`` adds the demo's Overview page at ``post_login_path``
    and an admin-only ``/admin`` page (403 below Admin), as a console stand-in.
    ``probe_interval``: how often Entra ID's reachability is checked while local accounts
    wait for it to fail (``[local] sign_in = "when-sso-unavailable"``). ``metrics``: the
    process's counts, which outlive this application (a reload builds another); one of its
    own when not given. ``/auth/check`` is timed only with ``[metrics] listen`` set."""
    form_targets = settings.entra.authority_host
    app = web.Application(client_max_size=64 * 1024)  # no middleware chain: see middlewares.py
    app[keys.SECURITY_HEADERS] = fixed_headers = security_header_set(
        settings.server.tls_cert_file is not None, form_targets)
    app.on_response_prepare.append(security_headers(fixed_headers))
    app[keys.CHECK_HEADERS] = {}
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = metrics = metrics or AgentMetrics(clock)
    app[keys.PROXY_TRUST] = ProxyTrust(settings.server.trusted_proxies)
    outbound = Outbound(settings.entra)
    tenant = TenantMetadata(settings.entra, outbound, clock)
    sessions = SessionStore(settings.session.state_dir if persist else None,
                            settings.session.idle_timeout, settings.session.absolute_timeout,
                            clock, settings.session.max_sessions_per_user,
                            revalidate_limit=settings.session.revalidate_interval
                            + settings.session.revalidate_grace)
    pending = PendingSignIns(settings.session.sign_in_timeout,
                             settings.session.max_pending_sign_ins,
                             settings.session.sign_ins_per_minute_per_client, clock)
    client = EntraClient(settings.entra)
    app[keys.TENANT] = tenant
    app[keys.REFUSALS] = RefusalAudit(clock)
    app[REFUSAL_PAGES] = RefusalPages(clock)
    app[keys.SESSIONS] = sessions
    graph = GraphClient(outbound, settings.entra.graph_url)
    idp = IdentityProvider(settings, tenant, client, graph)
    health = app[keys.HEALTH] = DependencyHealth(clock)  # what offers the local form
    bursts = app[keys.AUDIT_BURSTS] = AuditBursts(  # audit floods become summaries
        structlog.get_logger("agent.audit"), clock)
    app[keys.SIGN_IN] = SignIn(idp, pending, sessions, clock, health, bursts)
    app[keys.MSAL_WARM_UP] = MsalWarmUp(idp)
    supervisor = app[keys.SUPERVISOR] = Supervisor()
    revalidator = app[keys.REVALIDATOR] = Revalidator(
        idp, sessions, clock, report=lambda exc: supervisor.report("revalidation", exc))
    revalidator.outcomes = metrics.revalidations
    app[keys.LOCAL] = local = LocalSignIn(settings, tenant, health, bursts, sessions, clock)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(sessions.load)  # StateDirUnsafe: refuse before anything runs
        settle_heap(len(sessions))
        await outbound.start()
        ask = await _redecide_roles(sessions, settings)  # [roles] changed meanwhile
        await local.load()  # ends the sessions of removed or changed local accounts
        supervisor.start("journal_flush", lambda: _keep_sessions(sessions))
        supervisor.start("audit_bursts", lambda: _flush_audit_bursts(bursts))
        if not settings.sso_off:  # no [[setting]] applies: no tenant to talk to
            supervisor.start("tenant_metadata",
                             lambda: _keep_tenant_metadata(tenant, client, health))
            supervisor.start("revalidation", revalidator.run)
            if ask:  # [roles] source changed: Entra ID decides these sessions' roles now
                supervisor.start("roles_recheck", lambda: revalidator.recheck(ask), once=True)
            if local.accounts.accounts and settings.local.sign_in == "when-sso-unavailable":
                supervisor.start("entra_probe",
                                 lambda: _watch_entra(tenant, health, probe_interval))
        try:
            yield
        finally:
            try:
                await supervisor.stop()  # logs what the tasks raise; never raises it
            finally:
                try:
                    sessions.sweep()
                    await sessions.flush()
                finally:
                    sessions.close()
                    await outbound.close()
                    client.close()

    app.cleanup_ctx.append(resources)

    r = app.router
    # The hot path: unwrapped (see middlewares.py), timed only when metrics are served.
    r.add_get("/auth/check", check.timed_auth_check(metrics.auth_check)
              if settings.metrics.enabled else check.auth_check)
    r.add_get("/login", guarded(handlers.login))
    r.add_get("/auth/sso/start", guarded(handlers.sso_start))
    r.add_get(settings.entra.redirect_path, guarded(handlers.sso_callback))
    r.add_get("/auth/role-refused", guarded(handlers.role_refused))
    r.add_get(REFUSED_PATH, guarded(refused))
    r.add_post("/auth/local/sign-in", guarded(local_sign_in))
    r.add_get("/auth/me", guarded(handlers.me))
    r.add_post("/auth/logout", guarded(handlers.logout))
    r.add_get(FRONTCHANNEL_LOGOUT_PATH, guarded(frontchannel_logout))
    r.add_get("/healthz", guarded(healthz))
    r.add_get("/readyz", guarded(readyz))
    r.add_static("/auth/static", STATIC, append_version=False)
    if console:
        r.add_get(settings.server.post_login_path, guarded(handlers.overview))
        if settings.server.post_login_path != "/admin":
            r.add_get("/admin", guarded(handlers.admin_page))  # admin-only page of the stand-in
    return app


def settle_heap(restored: int) -> None:
    """Keep the collector's full passes off the restored sessions.

    Sessions hold no reference cycles, so the cyclic collector never frees one, but each of
    its passes over the oldest generation walks every object there: with 100,000 restored
    sessions, a pass blocked the event loop for 30-70 ms (seen as /auth/check's p99). After
    a restore, everything alive is moved out of its reach (``gc.freeze``); frozen objects
    are still freed by reference counting when they go. A previous freeze (the application
    this one replaces on a reload) is undone and collected first, so that nothing of the old
    application that only a cycle keeps is kept for ever; at first start there is no such
    thing, and the full collection (60 ms with 100,000 sessions) is skipped. Below
    ``FREEZE_AT`` sessions the collector's passes are short: nothing is frozen."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    if restored >= FREEZE_AT:
        gc.freeze()


async def _keep_tenant_metadata(tenant: TenantMetadata, client: EntraClient,
                                health: DependencyHealth) -> None:
    """Load discovery + keys, retrying with backoff; then refresh keys periodically (what
    each fetch found goes to ``health``). The client credential is checked here too; MSAL
    itself (and with it requests, about 8 MiB) waits for the first sign-in or
    re-validation."""
    failures = 0
    credential_checked = False
    while True:
        try:
            if not tenant.ready:
                await tenant.load()
                health.answered("Entra ID discovery", "Entra ID signing keys")
                log.info("identity_provider_ready", issuer=tenant.metadata.issuer
                         if tenant.metadata else None)
            if not credential_checked:
                await asyncio.to_thread(client.check_credential)
                credential_checked = True
            failures = 0
        except DependencyFailure as exc:
            failures += 1
            delay = doubling(failures, 1.0, 60.0)
            log.warning("identity_provider_not_ready", reason=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            continue
        await asyncio.sleep(KEY_REFRESH_INTERVAL)
        try:
            await tenant.refresh_keys()  # on failure the cached keys stay in use
        except DependencyFailure as exc:
            health.probe_failed(exc.dependency, str(exc))
        else:
            health.answered("Entra ID signing keys")


async def _flush_audit_bursts(bursts: AuditBursts) -> None:
    """Summaries of audit bursts go out when their interval ends, even if all goes quiet."""
    while True:
        await asyncio.sleep(1.0)
        bursts.flush_due()


async def _watch_entra(tenant: TenantMetadata, health: DependencyHealth,
                       interval: float) -> None:
    """Is Entra ID reachable? The agent's own probe decides (signin/health.py), and with it
    whether the local sign-in form is offered."""
    while True:
        await asyncio.sleep(interval)
        if not tenant.ready:
            continue  # _keep_tenant_metadata is retrying; the form shows meanwhile
        try:
            await tenant.probe()
        except DependencyFailure as exc:
            dependency = exc.dependency
            if not health.degraded().get(dependency):
                log.warning("identity_provider_unreachable", dependency=dependency,
                            reason=str(exc))
            health.probe_failed(dependency, str(exc))
        else:
            health.reachable("Entra ID")


def sweep_slice(sessions: SessionStore, cursor: int) -> int:
    """Sweep the next slice of the store; returns where the next one starts.

    A slice per flush, so that the whole store is swept every ``SWEEP_EVERY`` flushes
    without 100,000 sessions holding the event loop at once (one sweep of them took
    30-40 ms: a stall every 30 s for every request in flight)."""
    if cursor >= len(sessions):
        cursor = 0
    size = max(SWEEP_SLICE_MIN, -(-len(sessions) // SWEEP_EVERY))
    return cursor + size - sessions.sweep(cursor, size)  # removed ones shift the rest left


async def _redecide_roles(sessions: SessionStore, settings: Settings) -> list[Session]:
    """Decide the restored sessions' roles under ``settings``' ``[roles]``: those left
    without a role end; those a changed ``source`` decided are returned for Entra ID to
    decide now (ended instead when they cannot be re-validated)."""
    orphans, elsewhere = sessions.redecide_roles(settings.roles, settings.roles_source)
    reason, _ = no_role_reason(settings.roles_source)
    what = "app role" if settings.roles_source == "app_roles" else "group"
    for orphan in orphans:
        await sessions.end(orphan, reason, via="config_reload",
                           detail=f"no {what} of the session maps to a role any more")
    ask = [s for s in elsewhere if s.has_refresh_token and not settings.sso_off]
    for session in elsewhere:
        if not session.has_refresh_token or settings.sso_off:
            await sessions.end(session, reason, via="config_reload", detail="[roles] source "
                               "changed and the session cannot be re-validated: sign in again")
    return ask


async def _keep_sessions(sessions: SessionStore) -> None:
    cursor = 0
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            cursor = sweep_slice(sessions, cursor)
            await sessions.flush()
        except (OSError, StateDirUnsafe) as exc:  # flush logs write failures itself
            log.error("session_state_write_failed", error=str(exc),
                      fix="check that state_dir is writable by the service user")
