"""The tenant's discovery document and signing keys (JWKS), cached, with key rotation.

* The discovery document is trusted only if its ``issuer`` is this tenant's
  (``https://<host>/<tenant id>/v2.0``); otherwise the agent is not ready and signs no one in.
* Keys roll without notice: an unknown ``kid`` triggers one refetch, rate-limited counting
  from the last *forced* refetch, so the first genuine rotation is always picked up.
* While the JWKS endpoint is unreachable the cached keys keep serving.
* ``wait_ready()`` returns once both are loaded (an event, set by whichever load succeeds).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import structlog

from ..errors import DependencyFailure, IdentityProviderUnavailable, MetadataProblem
from ..settings import EntraSettings
from .answers import error_codes
from .outbound import Outbound

log = structlog.get_logger("agent.entra")


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    iss_parameter_supported: bool


@dataclass
class FetchCounts:
    discovery: int = 0
    jwks: int = 0
    jwks_forced: int = 0


@dataclass
class _KeySet:
    keys: dict[str | None, Any] = field(default_factory=dict)  # kid → PyJWK


class TenantMetadata:
    """Discovery document + JWKS for the configured tenant."""

    def __init__(self, settings: EntraSettings, outbound: Outbound,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.outbound = outbound
        self.clock = clock
        self.metadata: ProviderMetadata | None = None
        self._keys = _KeySet()
        self._last_forced: float | None = None
        self._lock = asyncio.Lock()
        self.not_ready_reason: str | None = "discovery document not loaded yet"
        # The AADSTS code when Entra ID refused the tenant itself (90002: a wrong tenant_id
        # or cloud): the sensor is misconfigured, not cut off.
        self.misconfigured: str | None = None
        self.counts = FetchCounts()
        self._ready = asyncio.Event()  # set once metadata and keys are loaded (see wait_ready)

    @property
    def discovery_url(self) -> str:
        return f"{self.settings.authority}/v2.0/.well-known/openid-configuration"

    @property
    def ready(self) -> bool:
        return self.metadata is not None and bool(self._keys.keys)

    async def wait_ready(self) -> None:
        """Return once the discovery document and signing keys are loaded."""
        while not self.ready:
            self._ready.clear()
            await self._ready.wait()

    def _loaded(self) -> None:
        if self.ready:
            self._ready.set()

    def sign_out_url(self) -> str | None:
        """Entra ID's sign-out page for an SSO session, or None to stay on this sensor.

        Only with ``signout_from_entra`` and a loaded ``end_session_endpoint``; Entra ID sends
        the browser back to ``post_logout_redirect_uri`` or a sign-in page of this sensor that
        does not start SSO by itself."""
        end_session = self.metadata.end_session_endpoint if self.metadata else None
        if not self.settings.signout_from_entra or not end_session:
            return None
        back = self.settings.post_logout_redirect_uri or \
            f"{self.settings.origin}/login?signed_out=1"
        return end_session + ("&" if "?" in end_session else "?") + urlencode(
            {"post_logout_redirect_uri": back})

    async def load(self) -> None:
        """Fetch discovery and keys; records why the agent is not ready on failure."""
        try:
            metadata = await self._fetch_discovery()
            keys = await self._fetch_jwks(metadata.jwks_uri)
        except IdentityProviderUnavailable as exc:
            self.not_ready_reason = exc.detail
            self.misconfigured = None
            raise
        except MetadataProblem as exc:
            self.not_ready_reason = str(exc)
            self.metadata = None
            raise
        self.metadata = metadata
        self._keys = keys
        self.not_ready_reason = None
        self.misconfigured = None
        self._loaded()

    async def probe(self) -> None:
        """Fetch the discovery document once (is Entra ID reachable?); keeps what is loaded.

        Raises ``IdentityProviderUnavailable`` or ``MetadataProblem`` like ``load``."""
        await self._fetch_discovery()

    async def refresh_keys(self) -> None:
        """Periodic refresh; on failure keep the cached keys."""
        if self.metadata is None:
            await self.load()
            return
        self._keys = await self._fetch_jwks(self.metadata.jwks_uri)
        self._loaded()

    async def signing_key(self, kid: str | None) -> Any | None:
        """The key for ``kid``; refetches once (rate-limited) when it is unknown."""
        key = self._lookup(kid)
        if key is not None or self.metadata is None:
            return key
        async with self._lock:
            key = self._lookup(kid)
            if key is not None:
                return key
            now = self.clock()
            if (self._last_forced is not None
                    and now - self._last_forced < self.settings.jwks_refetch_interval):
                return None
            self._last_forced = now
            self.counts.jwks_forced += 1
            try:
                self._keys = await self._fetch_jwks(self.metadata.jwks_uri)
            except DependencyFailure as exc:
                log.warning("jwks_refresh_failed", reason=str(exc))
                raise IdentityProviderUnavailable(
                    "jwks_unreachable", "the signing keys could not be refreshed",
                    dependency="Entra ID signing keys") from None
            return self._lookup(kid)

    def _lookup(self, kid: str | None) -> Any | None:
        keys = self._keys.keys
        if kid is None:
            # Without a kid, only an unambiguous key set may be used.
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    async def _fetch_discovery(self) -> ProviderMetadata:
        self.counts.discovery += 1
        resp = await self.outbound.request_json(
            "GET", self.discovery_url, dependency="Entra ID discovery")
        if resp.status != 200 or not isinstance(resp.body, dict):
            codes = error_codes(resp.body) if 400 <= resp.status < 500 else []
            self.misconfigured = codes[0] if codes else None
            detail = _aadsts(resp.body)
            raise MetadataProblem(
                f"discovery document answered HTTP {resp.status}{detail}: check entra.tenant_id "
                "and entra.authority_host")
        doc = resp.body
        expected_path = f"/{self.settings.tenant_id}/v2.0"
        issuer = doc.get("issuer")
        parts = urlsplit(issuer) if isinstance(issuer, str) else None
        if parts is None or parts.scheme != "https" or parts.path != expected_path:
            raise MetadataProblem(
                f"the discovery document's issuer {issuer!r} is not tenant "
                f"{self.settings.tenant_id}'s; check entra.tenant_id and entra.authority_host")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            # Pages a browser visits may be plain HTTP on loopback (a secure origin to
            # browsers; the demo uses it); anything the agent itself calls must be https.
            if not isinstance(value, str) or not (
                urlsplit(value).scheme == "https"
                or name == "authorization_endpoint" and _loopback_http(value)
            ):
                raise MetadataProblem(f"the discovery document has no https {name}")
            endpoints[name] = value
        end_session = doc.get("end_session_endpoint")
        if isinstance(end_session, str) and not (
                urlsplit(end_session).scheme == "https" or _loopback_http(end_session)):
            end_session = None
        return ProviderMetadata(
            issuer=str(issuer), end_session_endpoint=end_session if isinstance(end_session, str)
            else None,
            iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
            is True,
            **endpoints,
        )

    async def _fetch_jwks(self, uri: str) -> _KeySet:
        self.counts.jwks += 1
        resp = await self.outbound.request_json("GET", uri, dependency="Entra ID signing keys")
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise IdentityProviderUnavailable(
                "jwks_unreachable", f"the signing keys answered HTTP {resp.status}",
                dependency="Entra ID signing keys")
        keys: dict[str | None, Any] = {}
        for entry in resp.body.get("keys", []) if isinstance(resp.body.get("keys"), list) else []:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry, algorithm="RS256")
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            kid = entry.get("kid") if isinstance(entry.get("kid"), str) else None
            keys[kid if kid is not None else f"#{len(keys)}"] = key
        if not keys:
            raise MetadataProblem("the tenant's JWKS holds no usable RSA signing key",
                                  dependency="Entra ID signing keys")
        log.info("jwks_refreshed", keys=len(keys), kids=sorted(str(k) for k in keys))
        return _KeySet(keys=keys)


def _loopback_http(url: str) -> bool:
    """Plain http to a loopback host as a browser reads the URL: no userinfo (in
    ``http://evil.example\\@127.0.0.1/`` a browser's host is evil.example, since it reads the
    backslash as a slash), no backslash, no whitespace or control character."""
    if "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    if parts.scheme != "http" or "@" in parts.netloc or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _aadsts(body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("error_description"), str):
        first = body["error_description"].split("\n", 1)[0].strip()
        return f" ({first[:200]})"
    return ""
