"""Typed application and request keys (aiohttp's "no singletons")."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ..clientaddr import ProxyTrust
from ..entra.discovery import TenantMetadata
from ..local.signin import LocalSignIn
from ..logging import AuditBursts
from ..metrics.tally import AgentMetrics
from ..sessions.store import Session, SessionStore
from ..settings import Settings
from ..signin.flow import SignIn
from ..signin.health import DependencyHealth
from ..signin.revalidation import Revalidator
from ..signin.warmup import MsalWarmUp
from ..supervisor import Supervisor
from .refusals import RefusalAudit

SETTINGS = web.AppKey("settings", Settings)
SIGN_IN = web.AppKey("sign_in", SignIn)
HEALTH = web.AppKey("health", DependencyHealth)  # Entra ID's availability (signin/health.py)
AUDIT_BURSTS = web.AppKey("audit_bursts", AuditBursts)
MSAL_WARM_UP = web.AppKey("msal_warm_up", MsalWarmUp)
SESSIONS = web.AppKey("sessions", SessionStore)
TENANT = web.AppKey("tenant", TenantMetadata)
PROXY_TRUST = web.AppKey("proxy_trust", ProxyTrust)
REVALIDATOR = web.AppKey("revalidator", Revalidator)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
REFUSALS = web.AppKey("refusals", RefusalAudit)
SECURITY_HEADERS = web.AppKey("security_headers", CIMultiDictProxy[str])
# /auth/check's answer per session: (the role it was built for, the headers) (web/check.py)
CHECK_HEADERS = web.AppKey("check_headers", dict[Session, tuple[str, CIMultiDict[str]]])
LOCAL = web.AppKey("local_sign_in", LocalSignIn)
METRICS = web.AppKey("metrics", AgentMetrics)  # the process's counts (outlive a reload)
REQUEST_ID = web.RequestKey("request_id", str)
