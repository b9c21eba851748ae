"""Real processes on loopback for the deployment tests: the agent as systemd starts it, a
``NOTIFY_SOCKET`` the test owns, a small HTTP CONNECT proxy, a sign-in client and TLS files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.devidp import DevIdentityProvider
from agent.web.refusal_pages import REFUSED_PATH
from tests.devidp_driver import complete_sign_in
from tests.harness import PASSWORD, agent_config, free_port, write_config

REPO = Path(__file__).resolve().parents[2]


def agent_config_for(idp: DevIdentityProvider, port: int, state_dir: Path,
                     public_url: str | None = None) -> dict[str, dict[str, Any]]:
    """The harness's configuration; ``public_url`` is where browsers reach the agent."""
    data = agent_config(idp, port, state_dir)
    if public_url is not None:
        data["entra"]["redirect_uri"] = f"{public_url}/auth/sso/callback"
    if data["entra"]["redirect_uri"] not in idp.redirect_uris:
        idp.redirect_uris.append(data["entra"]["redirect_uri"])
    return data


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sd", dir="/tmp")  # sun_path <= 107
        self.path = str(Path(self._dir.name) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def receive(self, timeout: float = 10.0) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(message)
        return message

    async def wait_for(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if key in message:
                return message

    def close(self) -> None:
        self.sock.close()
        self._dir.cleanup()


class AgentProcess:
    """``python -m agent serve --config PATH``, as the unit's ExecStart runs it."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None,
                 scheme: str = "http", argv: list[str] | None = None) -> None:
        self.config, self.port, self.scheme = config, port, scheme
        self.log_path = config.with_suffix(f".{port}.log")
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
                   and "proxy" not in k.lower()}
        environ.update(env or {})
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            argv or [sys.executable, "-m", "agent", "serve", "--config", str(config)],
            cwd=REPO, env=environ, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def event_names(self) -> list[str]:
        return [e.get("event", "") for e in self.events()]

    async def wait_event(self, name: str, count: int = 1, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.event_names().count(name) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {name} event; log:\n{self.log_path.read_text()}")
            await asyncio.sleep(0.05)

    async def wait_healthy(self, timeout: float = 15.0, ssl: Any = None) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"agent exited {self.proc.returncode}:\n"
                                         f"{self.log_path.read_text()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/readyz", ssl=ssl) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"agent not ready:\n{self.log_path.read_text()}")
                await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("agent did not exit")
            await asyncio.sleep(0.05)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class SignInClient:
    """A cookie-keeping client that signs in at ``base`` through the local identity provider;
    with ``source``, a browser at its own address (connections leave from it)."""

    def __init__(self, base: str, idp: DevIdentityProvider, source: str | None = None) -> None:
        self.base = base
        self.idp_ssl = idp.client_ssl_context()
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        self.http = aiohttp.ClientSession(cookie_jar=jar, connector=connector)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
        url = path if path.startswith("http") else self.base + path
        async with self.http.get(url, allow_redirects=False, ssl=self.idp_ssl,
                                 **kwargs) as resp:
            answer = resp.status, dict(resp.headers), await resp.text()
        if answer[0] == 303 and answer[1].get("Location") == REFUSED_PATH:  # as a browser does
            return await self.get(REFUSED_PATH)
        return answer

    async def authorize(self, username: str, next_path: str = "/") -> str:
        """Up to the provider's redirect back: the callback URL (not yet requested)."""
        status, headers, body = await self.get("/auth/sso/start", params={"next": next_path})
        assert status == 302, body
        return await complete_sign_in(self.http, headers["Location"], username, PASSWORD,
                                      self.idp_ssl)

    async def sign_in(self, username: str, next_path: str = "/") -> None:
        status, headers, body = await self.get(await self.authorize(username, next_path))
        assert status == 302, body
        assert headers["Location"] == next_path

    async def close(self) -> None:
        await self.http.close()


PROXY_LOGIN = ("svc-sensor", "Pl@nt:Pr0xy pw")  # needs percent-encoding in the URL


def url_with_login(proxy: ConnectProxy, user: str, password: str) -> str:
    """The proxy's URL with ``user:password@`` in it, percent-encoded."""
    return proxy.url.replace("http://", f"http://{quote(user, safe='')}:"
                             f"{quote(password, safe='')}@")


class ConnectProxy:
    """A small HTTP CONNECT proxy on loopback that records the tunnels it opened.

    ``login=(user, password)``: CONNECT needs ``Proxy-Authorization: Basic`` with it (UTF-8),
    else 407; ``logins`` records each CONNECT's login: None (none sent), True or False.
    """

    def __init__(self, refuse: bool = False, login: tuple[str, str] | None = None) -> None:
        self.refuse = refuse
        self.login = login
        self.logins: list[bool | None] = []
        self.tunnels: list[str] = []
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_tunnels(self) -> None:
        """Close every open tunnel (as a proxy restarting after a password change does)."""
        for writer in list(self._open):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT" or self.refuse:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            if self.login is not None and not self._logged_in(head):
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b'Proxy-Authenticate: Basic realm="plant"\r\n'
                             b"Content-Length: 0\r\n\r\n")
                await writer.drain()
                return
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    def _logged_in(self, head: bytes) -> bool:
        sent = None
        for raw in head.split(b"\r\n")[1:]:
            name, _, value = raw.decode("latin-1").partition(":")
            if name.strip().lower() == "proxy-authorization":
                sent = value.strip()
        assert self.login is not None
        expected = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
        self.logins.append(None if sent is None else sent == expected)
        return sent == expected


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def write_ca(directory: Path, name: str = "Unrelated test CA") -> Path:
    _, cert = make_ca(name)
    path = directory / "other-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """CA, certificate for 127.0.0.1 and its key, as PEM files: (ca, cert, key)."""
    ca_key, ca = make_ca("Sensor test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


__all__ = ["REPO", "AgentProcess", "ConnectProxy", "NotifySocket", "SignInClient",
           "agent_config_for", "free_port", "write_ca", "write_config", "write_server_cert"]
