"""What the application says about itself: ``/healthz``, readiness (``/readyz``), and the
``Readings`` the metrics and ``sensor-sso-agent status`` show. Cheap on purpose: nothing here
walks the sessions (the store keeps its counts by role and method as sessions come and go)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from ..metrics.labels import DEPENDENCY_OF
from ..metrics.readings import Dependency, Readings
from . import keys


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None  # why not ready
    degraded: dict[str, str] = field(default_factory=dict)  # recently failing, and why
    fix: str | None = None  # what to do, when known


def readiness(app: web.Application) -> Readiness:
    """Not ready until discovery and keys are loaded, while session state cannot be written
    (no new sign-in could be kept) or while Entra ID rejects the client credential (with the
    fix); ``degraded`` names recently failing deps and tasks (``task:NAME``, supervisor.py)."""
    tenant = app[keys.TENANT]
    degraded = app[keys.HEALTH].degraded() | app[keys.SUPERVISOR].degraded()
    if (state := app[keys.SESSIONS].state_problem) is not None:
        return Readiness(False, f"session state cannot be written ({state}): new sign-ins are "
                         "refused, signed-in users keep working", degraded)
    if (rejected := app[keys.SIGN_IN].idp.client.credential.readiness()) is not None:
        return Readiness(False, rejected.get("reason"), degraded, rejected.get("fix"))
    if tenant.ready:
        return Readiness(True, None, degraded)
    if (off := app[keys.SETTINGS].sso_off_reason) is not None:
        return Readiness(False, f"SSO is off: {off}")
    return Readiness(False, tenant.not_ready_reason, degraded)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when ``readiness`` says ready, else 503 with why (and the fix when known)."""
    state = readiness(request.app)
    body: dict[str, object] = {"status": "ready" if state.ready else "not ready"}
    if state.reason is not None:
        body["reason"] = state.reason
    if state.fix is not None:
        body["fix"] = state.fix
    if state.degraded:
        body["degraded"] = state.degraded
    return web.json_response(body, status=200 if state.ready else 503)


def readings(app: web.Application) -> Readings:
    ready = readiness(app)
    sessions = app[keys.SESSIONS]
    state = sessions.state_problem
    return Readings(
        ready=ready.ready, why_not_ready=ready.reason, degraded=ready.degraded,
        sessions=sessions.by_role_method(),
        revalidation_lag=app[keys.REVALIDATOR].lag(),
        revalidate_interval=app[keys.SETTINGS].session.revalidate_interval,
        state_writable=state is None, state_problem=state,
        dependencies=_dependencies(app, ready.degraded),
        task_failures=app[keys.SUPERVISOR].failures(),
        failing_tasks=tuple(app[keys.SUPERVISOR].failing()))


def _dependencies(app: web.Application, degraded: dict[str, str]) -> dict[str, Dependency]:
    """Up unless a recent use of it failed (``DependencyHealth``, what ``/readyz``'s
    ``degraded`` says) or, for discovery, the tenant's metadata is not loaded; the last
    success from the same place, and from re-validation for the token endpoint."""
    if app[keys.SETTINGS].sso_off:
        return {}
    last = {DEPENDENCY_OF[human]: when for human, when in
            app[keys.HEALTH].last_answered().items() if human in DEPENDENCY_OF}
    refreshed = app[keys.REVALIDATOR].answered_at
    if refreshed is not None:
        last["token_endpoint"] = max(refreshed, last.get("token_endpoint", refreshed))
    out = {name: Dependency(up=True, last_success=last.get(name))
           for name in DEPENDENCY_OF.values()}
    tenant = app[keys.TENANT]
    if not tenant.ready:
        out["discovery"] = Dependency(False, last.get("discovery"), tenant.not_ready_reason)
    for human, why in degraded.items():
        if (name := DEPENDENCY_OF.get(human)) is not None:
            out[name] = Dependency(False, last.get(name), why)
    return out
