"""The provider's state: configuration, misbehaviour knobs, protocol records, keys, addresses.

``ProviderState`` is the one object every endpoint module receives (they import this module,
never ``server.py``); ``DevIdentityProvider`` (server.py) is this state plus the HTTP
lifecycle, so tests set the knobs on the provider itself.
"""

from __future__ import annotations

import collections
import datetime
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, overload
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from .faults import FaultMap, TokenTweaks, entra_error
from .keys import SigningKey
from .policies import AppPolicies
from .users import DevUser

_TEMPLATES = Path(__file__).parent / "templates"
_CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class AuthRequest:
    """One authorization request, from the authorize call until the code is issued."""

    client_id: str
    redirect_uri: str
    response_mode: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    login_hint: str | None
    prompt: str | None
    max_age: int | None
    client_info: bool
    created: float
    oid: str | None = None  # set once the password was right (MFA pending)
    claims: str | None = None  # the OIDC ``claims`` request parameter (JSON), as sent
    mfa_number: str | None = None


@dataclass
class IssuedCode:
    """An authorization code, from its issue until it expires (redeemed codes are kept)."""

    request: AuthRequest
    oid: str
    issued_at: float
    auth_time: float
    session_state: str
    redeemed: bool = False


@dataclass
class SsoSession:
    """The provider's own sign-in session behind the ``devidp_sso`` cookie."""

    oid: str
    auth_time: float
    session_state: str


@dataclass(frozen=True)
class IssuedRefreshToken:
    """A refresh token: whose, for what, and the sign-in that started its chain."""

    oid: str
    client_id: str
    scope: str
    session_state: str  # the ID token's ``sid``
    auth_time: float
    granted_at: float  # the sign-in that started this chain of refresh tokens
    expires_at: float


def _first_key() -> list[SigningKey]:
    return [SigningKey.generate()]


def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined)


class _TenantAddress:
    """A read-only attribute: the ``base`` address (``url`` or ``pages_url``), the tenant,
    then ``path``."""

    def __init__(self, base: str, path: str) -> None:
        self.base, self.path = base, path

    @overload
    def __get__(self, state: None, owner: type) -> _TenantAddress: ...

    @overload
    def __get__(self, state: ProviderState, owner: type) -> str: ...

    def __get__(self, state: ProviderState | None, owner: type) -> _TenantAddress | str:
        if state is None:
            return self
        return f"{getattr(state, self.base)}/{state.tenant_id}{self.path}"


@dataclass(eq=False)
class ProviderState:
    """Everything the endpoints read and write. See the package docstring for the knobs."""

    tenant_id: str
    client_id: str
    redirect_uris: list[str]
    users: list[DevUser]
    spa: bool = True
    clock: Callable[[], float] = time.time
    _: KW_ONLY
    client_secret: str | None = None
    client_certificate_pem: bytes | None = None
    iss_parameter_supported: bool = False
    enforce_graph_scopes: bool = False
    app_name: str = "sensor-sso-agent"
    code_lifetime: float = 600.0
    token_lifetime: int = 3600
    # Also serve the pages a person sees (authorize, sign-in, MFA, sign-out) over plain HTTP
    # on loopback, which browsers treat as a secure origin: no certificate warning in the
    # demo. Discovery then points the browser there; MSAL and the agent keep TLS.
    pages_over_http: bool = False
    host: str = "127.0.0.1"  # the name in its addresses (``devidp --name``)
    # The app registration's "Front-channel logout URL" (loaded with ?sid= on sign-out).
    frontchannel_logout_url: str | None = None
    # Group object id → the name the directory page shows (the demo's role groups).
    group_labels: dict[str, str] = field(default_factory=dict)
    # App roles: value → display name (manifest appRoles; assigned ones go into the ID
    # token's ``roles`` claim); group id → values assigned to it (its direct members get
    # them); "Assignment required?" (no app role at all: AADSTS50105 at sign-in).
    app_roles: dict[str, str] = field(default_factory=dict)
    group_app_roles: dict[str, list[str]] = field(default_factory=dict)
    assignment_required: bool = False
    policies: AppPolicies = field(default_factory=AppPolicies, init=False)  # application.py
    # Misbehaviour (reset_misbehaviour clears it).
    faults: FaultMap = field(default_factory=FaultMap, init=False)
    token_tweaks: TokenTweaks = field(default_factory=TokenTweaks, init=False)
    authorize_error: tuple[str, str] | None = field(default=None, init=False)
    iss_override: str | None = field(default=None, init=False)
    # Conditional Access authentication contexts (``c1``...) the users satisfy: an ID token
    # carries ``acrs`` with those the authorize request's ``claims`` asked for.
    auth_contexts: set[str] = field(default_factory=set, init=False)
    # What clients did: hits per endpoint name, the last token request's Origin header and
    # whether its code_verifier matched the challenge.
    requests: collections.Counter[str] = field(default_factory=collections.Counter, init=False)
    last_token_origin: str | None = field(default=None, init=False)
    last_token_pkce_ok: bool | None = field(default=None, init=False)
    # Protocol records.
    pending: dict[str, AuthRequest] = field(default_factory=dict, init=False)
    codes: dict[str, IssuedCode] = field(default_factory=dict, init=False)
    sso_sessions: dict[str, SsoSession] = field(default_factory=dict, init=False)
    refresh_tokens: dict[str, IssuedRefreshToken] = field(default_factory=dict, init=False)
    # oid → when its sessions were revoked (revokeSignInSessions): older grants are dead.
    sessions_revoked_at: dict[str, float] = field(default_factory=dict, init=False)
    # Signing keys: [0] signs; all are published; every key ever used verifies Graph calls.
    keys: list[SigningKey] = field(default_factory=_first_key, init=False, repr=False)
    known_keys: dict[str, SigningKey] = field(default_factory=dict, init=False, repr=False)
    # Where the server listens (set by ``start``).
    port: int | None = field(default=None, init=False)
    http_port: int | None = field(default=None, init=False)
    templates: jinja2.Environment = field(default_factory=_templates, init=False, repr=False)
    _foreign_key: SigningKey | None = field(default=None, init=False, repr=False)
    directory_token: str = field(default_factory=lambda: secrets.token_urlsafe(24),
                                 init=False, repr=False)  # the directory page's forms

    def __post_init__(self) -> None:
        self.redirect_uris = list(self.redirect_uris)
        self.known_keys.update({k.kid: k for k in self.keys})

    # ----- addresses -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (only after ``start``; ``host`` is 127.0.0.1 unless set)."""
        if self.port is None:
            raise RuntimeError("DevIdentityProvider not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def pages_url(self) -> str:
        """Where a browser meets the provider: ``url``, or plain HTTP on loopback."""
        if self.pages_over_http and self.http_port is not None:
            return f"http://127.0.0.1:{self.http_port}"
        return self.url

    # The tenant's addresses, Entra's layout: (base, path below /{tenant}).
    authority_host = graph_url = url
    authority = _TenantAddress("url", "")
    issuer = _TenantAddress("url", "/v2.0")
    discovery_url = _TenantAddress("url", "/v2.0/.well-known/openid-configuration")
    authorization_endpoint = _TenantAddress("pages_url", "/oauth2/v2.0/authorize")
    token_endpoint = _TenantAddress("url", "/oauth2/v2.0/token")
    jwks_uri = _TenantAddress("url", "/discovery/v2.0/keys")
    end_session_endpoint = _TenantAddress("pages_url", "/oauth2/v2.0/logout")

    def authorize_url(self, **params: str) -> str:
        """The authorization endpoint with ``params`` (client_id and response_type default)."""
        query = {"client_id": self.client_id, "response_type": "code", **params}
        return f"{self.authorization_endpoint}?{urlencode(query)}"

    # ----- keys, users, misbehaviour ---------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        return self.keys[0]

    @property
    def foreign_key(self) -> SigningKey:
        """A key that is never published (``token_tweaks.signing = "foreign_key"``)."""
        if self._foreign_key is None:
            self._foreign_key = SigningKey.generate()
        return self._foreign_key

    def rotate_keys(self, keep_old: bool = False) -> SigningKey:
        """Sign with a new RSA-2048 key; the JWKS keeps the old ones only if ``keep_old``."""
        key = SigningKey.generate()
        self.keys = [key, *self.keys] if keep_old else [key]
        self.known_keys[key.kid] = key
        return key

    def reset_misbehaviour(self) -> None:
        """Clear faults, token tweaks, ``authorize_error`` and ``iss_override``."""
        self.faults.clear()
        self.token_tweaks.clear()
        self.authorize_error = None
        self.iss_override = None

    def user_by_username(self, username: str) -> DevUser | None:
        wanted = username.strip().casefold()
        return next((u for u in self.users if u.username.casefold() == wanted), None)

    def user_by_oid(self, oid: str) -> DevUser | None:
        return next((u for u in self.users if u.oid == oid), None)

    def assigned_app_roles(self, user: DevUser) -> list[str]:
        """The values of the app roles assigned to ``user``, directly or through a group it
        is a member of, in the manifest's order; only roles the app registration defines."""
        assigned = set(user.app_roles)
        for group in user.groups:
            assigned.update(self.group_app_roles.get(group, ()))
        return [value for value in self.app_roles if value in assigned]

    # ----- answers shared by the endpoint modules -------------------------------------

    def wrong_tenant(self, request: web.Request, *, html: bool = False) -> web.Response | None:
        """The AADSTS90002 answer when the path names another tenant, else None."""
        tenant = request.match_info.get("tenant", "")
        if tenant == self.tenant_id:
            return None
        message = (
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud."
        )
        if html:
            return self.error_page(90002, message, status=400)
        return entra_error(request, 400, "invalid_tenant", 90002, message, self.clock())

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """Render an HTML page with a strict, nonce-based CSP and no caching."""
        nonce = uuid.uuid4().hex
        text = self.templates.get_template(template).render(csp_nonce=nonce, **context)
        return web.Response(
            status=status, text=text, content_type="text/html",
            headers={
                "Content-Security-Policy": _CSP.format(nonce=nonce),
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
            },
        )

    def error_page(self, code: int | None, message: str, status: int = 400,
                   title: str = "Sorry, but we're having trouble signing you in.") -> web.Response:
        ts = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        return self.render(
            "error.html", status=status, title=title, code=code, message=message,
            trace_id=str(uuid.uuid4()), correlation_id=str(uuid.uuid4()),
            timestamp=ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
