"""Settings: load the TOML file, apply defaults, validate everything once, freeze.

``load_settings`` gathers every problem into one ``ConfigError`` (key, value, why) so an
installer fixes the whole file in one go. Validation reads files it must (CA bundle, TLS
files) but never changes anything.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clientaddr import DEFAULT_TRUSTED_PROXIES, trusted_proxies_setting
from .clouds import CLOUDS, DEFAULT_CLOUD
from .config_checks import mask_credentials, placeholder_problems
from .errors import ConfigError
from .fleet import FleetChoice, SensorIdentity, effective_mapping
from .roles import ROLES
from .service_user import SERVICE_USER, current_user
from .settings_entra import entra_extras
from .settings_local import LOCAL_KEYS, LocalSettings, build_local
from .settings_session import admin_socket_path, revalidation_settings

DEFAULT_CONFIG_PATH = "/etc/sensor-sso-agent/agent.toml"
CONFIG_ENV = "SENSOR_SSO_AGENT_CONFIG"

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


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
    https_proxy: str | None = None
    timeout: float = 10.0
    clock_skew: float = 120.0
    jwks_refetch_interval: float = 300.0
    signout_from_entra: bool = False
    post_logout_redirect_uri: str | None = None
    cloud: str = DEFAULT_CLOUD
    platform: str = "spa"  # "spa": public client + Origin; "web": confidential client
    client_secret_file: Path | None = None
    client_certificate_file: Path | None = None  # PEM: private key (+ the certificate)
    client_certificate_thumbprint: str | None = None  # hex SHA-1; else from the certificate
    require_auth_context: str | None = None  # Conditional Access authentication context id
    max_age: float | None = None  # seconds since the user last authenticated at Entra
    login_hint: str | None = None
    domain_hint: str | None = None
    prompt: str | None = None  # "select_account" | "login" on every sign-in

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
class Settings:
    entra: EntraSettings
    roles: Mapping[str, tuple[str, ...]]
    server: ServerSettings = field(default_factory=ServerSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    source: str = "<defaults>"
    sensor: SensorIdentity = field(default_factory=SensorIdentity)
    fleet: FleetChoice | None = None  # which [[setting]] applies and why (None: built in code)

    @property
    def sso_off(self) -> str | None:
        """Why SSO is off for this sensor (no [[setting]] applies), else None."""
        return self.fleet.why if self.fleet is not None and self.fleet.sso_off else None


def parse_duration(text: str) -> float:
    """``"30m"`` → 1800.0; raises ValueError for anything else."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("expected a duration such as \"45s\", \"30m\", \"12h\" or \"1d\"")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """1800.0 → ``"30m"``: the largest unit that divides it (inverse of parse_duration)."""
    millis = round(seconds * 1000)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def listen_text(host: str, port: int) -> str:
    """``server.listen`` as the file writes it: host:port, IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_config_path() -> str:
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate the file at ``path``; every problem at once in a ``ConfigError``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        why = f"cannot read the file: {exc.strerror}"
        if isinstance(exc, PermissionError):
            why = unreadable(Path(path)) or why
        raise ConfigError([(str(path), "", why)]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), "", f"not valid TOML: {exc}")]) from None
    return settings_from_mapping(data, source=str(path))


def settings_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> Settings:
    effective, choice, sensor, fleet_problems = effective_mapping(data)
    v = _Validator(effective, sso_off=choice.sso_off)
    settings = v.build(source)
    assert settings is not None
    settings = replace(settings, sensor=sensor, fleet=choice)
    problems = fleet_problems + [p for p in v.problems if p not in fleet_problems]
    problems += placeholder_problems(settings)  # the example's ids: no one could sign in
    if problems:
        raise ConfigError(problems)
    return settings


_SECTIONS: dict[str, set[str]] = {
    "server": {"listen", "tls_cert_file", "tls_key_file", "post_login_path", "sensor_name",
               "access_contact", "trust_forwarded_for", "sensor_version_file",
               "trusted_proxies", "admin_socket"},
    "entra": {"tenant_id", "client_id", "redirect_uri", "authority_host", "graph_url",
              "ca_bundle", "https_proxy", "timeout", "clock_skew", "jwks_refetch_interval",
              "signout_from_entra", "post_logout_redirect_uri", "cloud", "platform",
              "client_secret_file", "client_certificate_file", "client_certificate_thumbprint",
              "require_auth_context", "max_age", "login_hint", "domain_hint", "prompt"},
    "roles": set(ROLES),
    "session": {"idle_timeout", "absolute_timeout", "state_dir", "sign_in_timeout",
                "max_pending_sign_ins", "sign_ins_per_minute_per_client",
                "max_sessions_per_user", "revalidate_interval", "revalidate_grace"},
    "local": LOCAL_KEYS,
}


class _Validator:
    def __init__(self, data: Mapping[str, Any], sso_off: bool = False) -> None:
        self.data = data
        self.sso_off = sso_off  # no [[setting]] applies: application and roles may be absent
        self.problems: list[tuple[str, str, str]] = []

    def problem(self, key: str, value: object, why: str) -> None:
        self.problems.append((key, "" if value is None else repr(value), why))

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            self.problem(name, value, "must be a table ([" + name + "])")
            return {}
        for key in value:
            if key not in _SECTIONS[name]:
                known = ", ".join(sorted(_SECTIONS[name]))
                self.problem(f"{name}.{key}", value[key], f"unknown key; known keys: {known}")
        return value

    def get(self, sec: Mapping[str, Any], name: str, key: str, kind: type, default: Any) -> Any:
        if key not in sec:
            return default
        value = sec[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            self.problem(f"{name}.{key}", value, f"must be a {kind.__name__}")
            return default
        return value

    def duration(self, sec: Mapping[str, Any], name: str, key: str, default: float) -> float:
        if key not in sec:
            return default
        try:
            seconds = parse_duration(sec[key])
        except ValueError as exc:
            self.problem(f"{name}.{key}", sec[key], str(exc))
            return default
        if seconds <= 0:
            self.problem(f"{name}.{key}", sec[key], "must be longer than zero")
        return seconds

    def guid(self, sec: Mapping[str, Any], name: str, key: str, what: str) -> str:
        value = self.get(sec, name, key, str, None)
        if value is None:
            if key not in sec:
                self.problem(f"{name}.{key}", None, f"required: {what}")
            return ""
        if not _is_guid(value):
            self.problem(f"{name}.{key}", value, f"must be a GUID ({what})")
        return str(value).lower()

    def url(self, sec: Mapping[str, Any], name: str, key: str, default: str | None,
            schemes: tuple[str, ...] = ("https",), allow_loopback_http: bool = False) -> str | None:
        value = self.get(sec, name, key, str, default)
        if value is None:
            return None
        shown = mask_credentials(value)  # a proxy's password never reaches the journal
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            self.problem(f"{name}.{key}", shown, "is not a URL")
            return str(value)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme not in schemes and not (
            allow_loopback_http and parts.scheme == "http" and loopback
        ):
            self.problem(f"{name}.{key}", shown, f"must be an {' or '.join(schemes)} URL")
        elif not parts.hostname:
            self.problem(f"{name}.{key}", shown, "has no host name")
        elif parts.fragment or parts.username or parts.password:
            self.problem(f"{name}.{key}", shown, "must not carry a fragment or credentials")
        return str(value)

    def file(self, sec: Mapping[str, Any], name: str, key: str) -> Path | None:
        value = self.get(sec, name, key, str, None)
        if value is None:
            return None
        path = Path(value)
        why = unreadable(path)
        if why is not None:
            self.problem(f"{name}.{key}", value, why)
        return path

    @staticmethod
    def readable(path: Path | None) -> bool:
        """Whether to look inside ``path`` (its problem, if any, is already recorded)."""
        return path is not None and unreadable(path) is None

    def build(self, source: str) -> Settings | None:
        for name in self.data:
            if name not in _SECTIONS:
                self.problem(name, None, f"unknown section; known: {', '.join(_SECTIONS)}")
        server = self.build_server()
        entra = self.build_entra()
        roles = self.build_roles()
        session = self.build_session()
        return Settings(entra=entra, roles=roles, server=server, session=session,
                        local=build_local(self), source=source)

    def build_server(self) -> ServerSettings:
        s = self.section("server")
        d = ServerSettings()
        host, port = d.listen_host, d.listen_port
        listen = self.get(s, "server", "listen", str, None)
        if listen is not None:
            m = re.match(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d{1,5})$", listen)
            if not m or not 0 < int(m.group(2)) < 65536:
                self.problem("server.listen", listen, "must be host:port, e.g. 127.0.0.1:8080")
            else:
                host, port = m.group(1).strip("[]"), int(m.group(2))
        cert = self.file(s, "server", "tls_cert_file")
        key = self.file(s, "server", "tls_key_file")
        if (cert is None) != (key is None):
            self.problem("server.tls_cert_file", None,
                         "tls_cert_file and tls_key_file must be set together")
        version_file = self.get(s, "server", "sensor_version_file", str, None)
        path = self.get(s, "server", "post_login_path", str, d.post_login_path)
        if not is_local_path(path):
            self.problem("server.post_login_path", path, "must be a path on this sensor, like /")
        return ServerSettings(
            listen_host=host, listen_port=port, tls_cert_file=cert, tls_key_file=key,
            post_login_path=path,
            sensor_name=self.get(s, "server", "sensor_name", str, d.sensor_name),
            access_contact=self.get(s, "server", "access_contact", str, d.access_contact),
            trusted_proxies=trusted_proxies_setting(self, s),
            trust_forwarded_for=self.get(s, "server", "trust_forwarded_for", bool, None),
            sensor_version_file=Path(version_file) if version_file else None,
            admin_socket=admin_socket_path(self, s, d.admin_socket),
        )

    def build_entra(self) -> EntraSettings:
        e = self.section("entra")
        if self.sso_off:
            e = {"tenant_id": _OFF_GUID, "client_id": _OFF_GUID, **e}
        tenant = self.guid(e, "entra", "tenant_id", "the Directory (tenant) ID in Entra ID")
        client = self.guid(e, "entra", "client_id", "the app registration's Application ID")
        if "redirect_uri" not in e:
            self.problem("entra.redirect_uri", None,
                         "required: the SPA redirect URI exactly as registered")
        redirect = self.url(e, "entra", "redirect_uri", "", allow_loopback_http=True) or ""
        if redirect and urlsplit(redirect).query:
            self.problem("entra.redirect_uri", redirect, "must not carry a query string")
        if redirect and not urlsplit(redirect).path.startswith("/"):
            self.problem("entra.redirect_uri", redirect, "needs a path, e.g. /auth/sso/callback")
        d = EntraSettings(tenant_id="", client_id="", redirect_uri="")
        cloud = self.get(e, "entra", "cloud", str, DEFAULT_CLOUD)
        if cloud not in CLOUDS:
            self.problem("entra.cloud", cloud, f"must be one of: {', '.join(CLOUDS)}")
            cloud = DEFAULT_CLOUD
        hosts = CLOUDS[cloud]
        authority = self.url(e, "entra", "authority_host", hosts.authority_host) or \
            hosts.authority_host
        if "authority_host" in e and urlsplit(authority).path.strip("/"):
            self.problem("entra.authority_host", authority, "must be the scheme and host only, "
                         "e.g. https://login.microsoftonline.com: the tenant goes in "
                         "entra.tenant_id")
        graph = self.url(e, "entra", "graph_url", hosts.graph_url) or hosts.graph_url
        ca = self.file(e, "entra", "ca_bundle")
        if ca is not None and self.readable(ca):
            try:
                from cryptography import x509

                x509.load_pem_x509_certificates(ca.read_bytes())
            except (ValueError, OSError):
                self.problem("entra.ca_bundle", str(ca), "is not a PEM file of certificates")
        proxy = self.url(e, "entra", "https_proxy", None, schemes=("http", "https"))
        logout_uri = self.url(e, "entra", "post_logout_redirect_uri", None,
                              allow_loopback_http=True)
        return EntraSettings(
            tenant_id=tenant, client_id=client, redirect_uri=redirect,
            authority_host=authority.rstrip("/"), graph_url=graph.rstrip("/"),
            ca_bundle=ca, https_proxy=proxy,
            timeout=self.duration(e, "entra", "timeout", d.timeout),
            clock_skew=self.duration(e, "entra", "clock_skew", d.clock_skew),
            jwks_refetch_interval=self.duration(e, "entra", "jwks_refetch_interval",
                                                d.jwks_refetch_interval),
            signout_from_entra=self.get(e, "entra", "signout_from_entra", bool, False),
            post_logout_redirect_uri=logout_uri, cloud=cloud, **entra_extras(self, e),
        )

    def build_roles(self) -> dict[str, tuple[str, ...]]:
        r = self.section("roles")
        roles: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for role in ROLES:
            groups = r.get(role, [])
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                self.problem(f"roles.{role}", groups, "must be a list of group object ids")
                groups = []
            clean: list[str] = []
            for group in groups:
                if not _is_guid(group):
                    self.problem(f"roles.{role}", group,
                                 "not a group object id (GUID from Entra ID > Groups)")
                    continue
                gid = group.lower()
                if gid in owner and owner[gid] != role:
                    self.problem(f"roles.{role}", group,
                                 f"also mapped to role {owner[gid]}; map each group to one role")
                owner[gid] = role
                if gid not in clean:
                    clean.append(gid)
            roles[role] = tuple(clean)
        if not any(roles.values()) and not self.sso_off:
            self.problem("roles", None,
                         "map at least one Entra group to admin, security_analyst or read_only")
        return roles

    def build_session(self) -> SessionSettings:
        s = self.section("session")
        d = SessionSettings()
        idle = self.duration(s, "session", "idle_timeout", d.idle_timeout)
        absolute = self.duration(s, "session", "absolute_timeout", d.absolute_timeout)
        if idle > absolute:
            self.problem("session.idle_timeout", s.get("idle_timeout"),
                         "must not be longer than session.absolute_timeout")
        state_dir = self.get(s, "session", "state_dir", str, str(d.state_dir))
        max_pending = self.get(s, "session", "max_pending_sign_ins", int, d.max_pending_sign_ins)
        per_client = self.get(s, "session", "sign_ins_per_minute_per_client", int,
                              d.sign_ins_per_minute_per_client)
        per_user = self.get(s, "session", "max_sessions_per_user", int, d.max_sessions_per_user)
        for key, value in (("max_pending_sign_ins", max_pending),
                           ("sign_ins_per_minute_per_client", per_client),
                           ("max_sessions_per_user", per_user)):
            if value < 1:
                self.problem(f"session.{key}", value, "must be at least 1")
        return SessionSettings(
            idle_timeout=idle, absolute_timeout=absolute, state_dir=Path(state_dir),
            sign_in_timeout=self.duration(s, "session", "sign_in_timeout", d.sign_in_timeout),
            max_pending_sign_ins=max_pending, sign_ins_per_minute_per_client=per_client,
            max_sessions_per_user=per_user,
            **revalidation_settings(self, s, absolute),
        )


_OFF_GUID = "00000000-0000-0000-0000-000000000000"


def unreadable(path: Path) -> str | None:
    """Why this process cannot read the file at ``path`` (naming its user), or None."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return "is not a regular file"
        with path.open("rb"):
            pass
    except FileNotFoundError:
        return "file does not exist"
    except PermissionError as exc:
        user = current_user()
        service = "" if user == SERVICE_USER else f"; the service runs as {SERVICE_USER}"
        return (f"not readable by user {user} ({exc.strerror}){service}: e.g. chgrp "
                f"{SERVICE_USER} {path} && chmod g+r {path} (and g+x on its directories)")
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    return None


def _is_guid(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_local_path(path: object) -> bool:
    """A same-site relative path: starts with one ``/``, no scheme, host, backslash or control."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 2048:
        return False
    if path.startswith("//") or "\\" in path:
        return False
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return False
    lowered = path.lower()
    # Encoded slashes or backslashes right after the first one turn into //host in some stacks.
    return not (lowered.startswith("/%2f") or lowered.startswith("/%5c"))
