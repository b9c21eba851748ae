"""The dev identity provider's lifecycle: TLS material, sockets, the aiohttp app."""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from . import authorize, directory, graph, metadata, signout, tokens
from .certs import TlsMaterial, make_tls_material
from .state import ProviderState


@dataclass(eq=False)
class DevIdentityProvider(ProviderState):
    """A loopback, HTTPS, Entra ID-like OpenID provider with a Microsoft Graph subset.

    The state the endpoints share (``ProviderState``) plus serving it. ``state_dir`` holds
    the TLS files (a temporary directory when None). See the package docstring for
    endpoints, automation and misbehaviour knobs.
    """

    state_dir: Path | None = None
    _tls: TlsMaterial = field(default_factory=make_tls_material, init=False, repr=False)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False,
                                                             repr=False)
    _ca_file: Path | None = field(default=None, init=False, repr=False)

    def use_tls(self, material: TlsMaterial) -> None:
        """Serve with this CA and certificate instead of a throwaway pair (before ``start``;
        ``devidp`` keeps them in its state directory)."""
        self._tls = material

    async def start(self, port: int = 0, bind: str = "127.0.0.1") -> None:
        """Serve HTTPS on ``bind``:``port`` (0 = any free port)."""
        if self._runner is not None:
            raise RuntimeError("already started")
        directory = self.state_dir
        if directory is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="devidp-")
            directory = Path(self._tmpdir.name)
        ca_file, cert_file, key_file = self._tls.write(directory)
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
        try:
            sock.bind((bind, port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
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
            self.http_port = plain.getsockname()[1]
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
        for module in (metadata, authorize, tokens, signout, graph, directory):
            app.add_routes(module.routes(self))
        return app

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


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
