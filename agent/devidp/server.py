"""The dev identity provider: lifecycle, shared state, discovery, JWKS and sign-out."""

from __future__ import annotations

import collections
import datetime
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from . import authorize, graph, tokens
from .authorize import SSO_COOKIE
from .certs import TlsMaterial, make_tls_material
from .faults import FaultMap, entra_error
from .keys import SigningKey
from .users import DevUser

_TEMPLATES = Path(__file__).parent / "templates"
_CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class DevIdentityProvider:
    """A loopback, HTTPS, Entra ID-like OpenID provider with a Microsoft Graph subset.

    See the package docstring for endpoints, automation and misbehaviour knobs.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        redirect_uris: list[str],
        users: list[DevUser],
        spa: bool = True,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
        *,
        client_secret: str | None = None,
        client_certificate_pem: bytes | None = None,
        iss_parameter_supported: bool = False,
        enforce_graph_scopes: bool = False,
        app_name: str = "sensor-sso-agent",
        code_lifetime: float = 600.0,
        token_lifetime: int = 3600,
        pages_over_http: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.redirect_uris = list(redirect_uris)
        self.users = users
        self.spa = spa
        self.clock = clock
        self.state_dir = state_dir
        self.client_secret = client_secret
        self.client_certificate_pem = client_certificate_pem
        self.iss_parameter_supported = iss_parameter_supported
        self.enforce_graph_scopes = enforce_graph_scopes
        self.app_name = app_name
        self.code_lifetime = code_lifetime
        self.token_lifetime = token_lifetime
        # Also serve the pages a person sees (authorize, sign-in, MFA, sign-out) over plain
        # HTTP on loopback, which browsers treat as a secure origin: no certificate warning in
        # the demo. Discovery then points the browser there; MSAL and the agent keep TLS.
        self.pages_over_http = pages_over_http
        self._http_port: int | None = None
        # Misbehaviour (see reset_misbehaviour).
        self.faults = FaultMap()
        self.token_tweaks: dict[str, Any] = tokens.TokenTweaks()
        self.authorize_error: tuple[str, str] | None = None
        self.iss_override: str | None = None
        self.requests: collections.Counter[str] = collections.Counter()
        # Conditional Access authentication contexts (``c1``...) the users satisfy: an ID
        # token carries ``acrs`` with those the authorize request's ``claims`` asked for.
        self.auth_contexts: set[str] = set()
        self.last_token_origin: str | None = None  # Origin header of the last token request
        self.last_token_pkce_ok: bool | None = None  # its code_verifier matched the challenge
        # Protocol state.
        self.pending: dict[str, authorize.AuthRequest] = {}
        self.codes: dict[str, authorize.IssuedCode] = {}
        self.sso_sessions: dict[str, authorize.SsoSession] = {}
        self._keys: list[SigningKey] = [SigningKey.generate()]  # [0] signs; all are published
        self.known_keys: dict[str, SigningKey] = {k.kid: k for k in self._keys}
        self._foreign_key: SigningKey | None = None
        self._tls: TlsMaterial = make_tls_material()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._runner: web.AppRunner | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: Path | None = None
        self._port: int | None = None

    # ----- lifecycle -------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Serve HTTPS on 127.0.0.1:``port`` (0 = any free port)."""
        if self._runner is not None:
            raise RuntimeError("already started")
        directory = self.state_dir
        if directory is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="devidp-")
            directory = Path(self._tmpdir.name)
        ca_file, cert_file, key_file = self._tls.write(directory)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._ca_file = ca_file
        runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.SockSite(
            runner, sock, ssl_context=self._tls.server_context(cert_file, key_file)
        )
        await site.start()
        self._runner = runner
        if self.pages_over_http:
            plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            plain.bind(("127.0.0.1", 0))
            self._http_port = plain.getsockname()[1]
            await web.SockSite(runner, plain).start()

    async def stop(self) -> None:
        """Stop serving and delete temporary files."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> DevIdentityProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[_security_headers])
        t = "/{tenant}"
        app.router.add_get(f"{t}/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"{t}/discovery/v2.0/keys", self._jwks)
        app.router.add_route("*", f"{t}/oauth2/v2.0/logout", self._logout)
        app.add_routes(authorize.routes(self))
        app.add_routes(tokens.routes(self))
        app.add_routes(graph.routes(self))
        return app

    # ----- addresses -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` (only after ``start``)."""
        if self._port is None:
            raise RuntimeError("DevIdentityProvider not started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def graph_url(self) -> str:
        return self.url

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/{self.tenant_id}/v2.0"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def pages_url(self) -> str:
        """Where a browser meets the provider: ``url``, or plain HTTP on loopback."""
        if self.pages_over_http and self._http_port is not None:
            return f"http://127.0.0.1:{self._http_port}"
        return self.url

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.pages_url}/{self.tenant_id}/oauth2/v2.0/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/discovery/v2.0/keys"

    @property
    def end_session_endpoint(self) -> str:
        return f"{self.pages_url}/{self.tenant_id}/oauth2/v2.0/logout"

    @property
    def ca_file(self) -> Path:
        """PEM file of the throwaway CA that issued the server certificate."""
        if self._ca_file is None:
            raise RuntimeError("DevIdentityProvider not started")
        return self._ca_file

    @property
    def ca_pem(self) -> bytes:
        return self._tls.ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts this IdP (for aiohttp clients)."""
        return self._tls.client_context()

    # ----- keys, users, misbehaviour ---------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        return self._keys[0]

    @property
    def foreign_key(self) -> SigningKey:
        """A key that is never published (``token_tweaks["signing"] = "foreign_key"``)."""
        if self._foreign_key is None:
            self._foreign_key = SigningKey.generate()
        return self._foreign_key

    def rotate_keys(self, keep_old: bool = False) -> SigningKey:
        """Sign with a new RSA-2048 key; the JWKS keeps the old ones only if ``keep_old``."""
        key = SigningKey.generate()
        self._keys = [key, *self._keys] if keep_old else [key]
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

    def authorize_url(self, **params: str) -> str:
        """The authorization endpoint with ``params`` (client_id and response_type default)."""
        query = {"client_id": self.client_id, "response_type": "code", **params}
        return f"{self.authorization_endpoint}?{urlencode(query)}"

    def sign_in_form_url(self, **params: str) -> str:
        """Alias of ``authorize_url``: the URL whose answer is the sign-in form."""
        return self.authorize_url(**params)

    # ----- helpers for the route modules ----------------------------------------------

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

    # ----- discovery, JWKS, sign-out ---------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.requests["discovery"] += 1
        if (faulted := await self.faults.apply("discovery")) is not None:
            return faulted
        if (wrong := self.wrong_tenant(request)) is not None:
            return wrong
        doc = discovery_document(self)
        return web.json_response(doc, headers={"Cache-Control": "max-age=86400, private"})

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.requests["jwks"] += 1
        if (faulted := await self.faults.apply("jwks")) is not None:
            return faulted
        if (wrong := self.wrong_tenant(request)) is not None:
            return wrong
        with_kid = not self.token_tweaks.get("jwks_without_kid", False)
        keys = [k.jwk(self.issuer, with_kid=with_kid) for k in self._keys]
        return web.json_response({"keys": keys}, headers={"Cache-Control": "max-age=86400"})

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self.requests["logout"] += 1
        if (faulted := await self.faults.apply("logout")) is not None:
            return faulted
        if (wrong := self.wrong_tenant(request, html=True)) is not None:
            return wrong
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        cookie = request.cookies.get(SSO_COOKIE)
        if cookie:
            self.sso_sessions.pop(cookie, None)
        target = params.get("post_logout_redirect_uri")
        response: web.StreamResponse
        if target and target in self.redirect_uris:
            if params.get("state"):
                sep = "&" if "?" in target else "?"
                target = f"{target}{sep}{urlencode({'state': params['state']})}"
            response = web.Response(status=302, headers={"Location": target})
        else:
            response = self.render("signed_out.html")
        response.del_cookie(SSO_COOKIE, path="/", secure=True, httponly=True, samesite="None")
        return response


def discovery_document(idp: DevIdentityProvider) -> dict[str, Any]:
    """The tenant's v2.0 OpenID configuration, shaped like Entra's."""
    issuer = idp.token_tweaks.get("discovery_issuer", idp.issuer)
    doc: dict[str, Any] = {
        "token_endpoint": idp.token_endpoint,
        "token_endpoint_auth_methods_supported": [
            "client_secret_post", "private_key_jwt", "client_secret_basic",
        ],
        "jwks_uri": idp.jwks_uri,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{idp.graph_url}/oidc/userinfo",
        "authorization_endpoint": idp.authorization_endpoint,
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": idp.end_session_endpoint,
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
        ],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "devidp.localhost",
        "cloud_graph_host_name": urlsplit(idp.graph_url).netloc,
        "msgraph_host": urlsplit(idp.graph_url).netloc,
        "rbac_url": f"{idp.url}/rbac",
    }
    if idp.iss_parameter_supported:
        doc["authorization_response_iss_parameter_supported"] = True
    return doc


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
