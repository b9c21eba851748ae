"""The frozen settings model: what a valid configuration file means, with every default.

Built only by the loader (``load_settings`` / ``settings_from_mapping``), after every check
passed; nothing here validates or reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from ..clientaddr import DEFAULT_TRUSTED_PROXIES
from .clouds import DEFAULT_CLOUD
from .values import listen_text

DEFAULT_ACCOUNTS_FILE = Path("/etc/sensor-sso-agent/local-accounts")
Platform = Literal["spa", "web"]  # public client + Origin | confidential client
Prompt = Literal["select_account", "login"]
SignInPolicy = Literal["never", "when-sso-unavailable", "always"]  # when the form is offered
PLATFORMS: tuple[Platform, ...] = get_args(Platform)
PROMPTS: tuple[Prompt, ...] = get_args(Prompt)
SIGN_IN_POLICIES: tuple[SignInPolicy, ...] = get_args(SignInPolicy)


@dataclass(frozen=True)
class ServerSettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    post_login_path: str = "/"
    sensor_name: str = "OT sensor"
    access_contact: str = "your sensor administrator"
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES  # X-Forwarded-For from these
    trust_forwarded_for: bool | None = None  # deprecated alias; None: not in the file
    sensor_version_file: Path | None = None  # check-config warns below the first SSO release
    admin_socket: Path = Path("/run/sensor-sso-agent/admin.sock")  # `sessions` commands


@dataclass(frozen=True)
class EntraSettings:
    tenant_id: str
    client_id: str
    redirect_uri: str
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    ca_bundle: Path | None = None
    https_proxy: str | None = field(default=None, repr=False)  # may carry a password
    timeout: float = 10.0
    clock_skew: float = 120.0
    jwks_refetch_interval: float = 300.0
    signout_from_entra: bool = False
    post_logout_redirect_uri: str | None = None
    cloud: str = DEFAULT_CLOUD
    platform: Platform = "spa"  # "spa": public client + Origin; "web": confidential client
    client_secret_file: Path | None = None
    client_certificate_file: Path | None = None  # PEM: private key (+ the certificate)
    client_certificate_thumbprint: str | None = None  # hex SHA-1; else from the certificate
    require_auth_context: str | None = None  # Conditional Access authentication context id
    max_age: float | None = None  # seconds since the user last authenticated at Entra
    login_hint: str | None = None
    domain_hint: str | None = None
    prompt: Prompt | None = None  # asked on every sign-in
    allow_guests: bool = False  # B2B guests (another tenant's accounts) may sign in

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def redirect_path(self) -> str:
        return urlsplit(self.redirect_uri).path

    @property
    def origin(self) -> str:
        """Scheme, host and port of the redirect URI: the ``Origin`` of SPA redemptions."""
        parts = urlsplit(self.redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class SessionSettings:
    idle_timeout: float = 1800.0
    absolute_timeout: float = 43200.0
    state_dir: Path = Path("/var/lib/sensor-sso-agent")
    sign_in_timeout: float = 600.0
    max_pending_sign_ins: int = 10000
    sign_ins_per_minute_per_client: int = 30
    max_sessions_per_user: int = 10
    revalidate_interval: float = 300.0  # every SSO session re-checked with Entra ID this often
    revalidate_grace: float = 3600.0  # kept this long past a due re-validation Entra missed


@dataclass(frozen=True)
class LocalSettings:
    """``[local]``: where ``local-user`` keeps the accounts, and when the form is offered
    (one of ``SIGN_IN_POLICIES``)."""

    accounts_file: Path = DEFAULT_ACCOUNTS_FILE
    sign_in: SignInPolicy = "when-sso-unavailable"


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: the Prometheus listener; ``listen_host`` None means off (the default)."""

    listen_host: str | None = None
    listen_port: int = 0

    @property
    def enabled(self) -> bool:
        return self.listen_host is not None

    @property
    def listen(self) -> str:
        """As the file writes it: host:port ("" when off)."""
        return "" if self.listen_host is None else listen_text(self.listen_host,
                                                                self.listen_port)


@dataclass(frozen=True)
class SensorIdentity:
    """``[sensor]``: who this sensor is, matched against the ``[[setting]]`` scopes."""

    name: str | None = None
    site: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class FleetChoice:
    """Which setting applies and why; ``setting`` is None when none does (SSO off)."""

    setting: str | None
    level: str | None  # "sensor" | "zone" | "site" | "single" | None
    why: str
    # When none applies: the sites, zones and sensors the [[setting]] blocks name.
    known: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def sso_off(self) -> bool:
        """No ``[[setting]]`` applies (``why`` says which scopes matched nothing)."""
        return self.setting is None and self.level is None


@dataclass(frozen=True)
class Settings:
    entra: EntraSettings
    roles: Mapping[str, tuple[str, ...]]
    server: ServerSettings = field(default_factory=ServerSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    source: str = "<defaults>"
    sensor: SensorIdentity = field(default_factory=SensorIdentity)
    fleet: FleetChoice | None = None  # which [[setting]] applies and why (None: built in code)
    # [roles] source: what ``roles`` lists and where the role comes from: "groups" (group
    # object ids; the groups claim, Graph on overage) or "app_roles" (app role values; the
    # ID token's roles claim alone).
    roles_source: str = "groups"

    @property
    def sso_off(self) -> bool:
        """No ``[[setting]]`` applies to this sensor: no tenant, no SSO (the form alone)."""
        return self.fleet is not None and self.fleet.sso_off

    @property
    def sso_off_reason(self) -> str | None:
        """Why SSO is off for this sensor (which scopes matched nothing), else None."""
        return self.fleet.why if self.fleet is not None and self.fleet.sso_off else None
