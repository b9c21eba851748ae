"""The network half of ``check-connectivity``: DNS, TCP and TLS to a host, as the agent
reaches it (directly, or through an HTTP ``CONNECT`` tunnel when a proxy is used), verified
with the agent's trust settings. Each failure raises ``CheckFailed`` with the fix to try.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from ..entra.outbound import ssl_context
from ..errors import CheckFailed
from ..settings import EntraSettings

FIREWALL = ("allow outbound HTTPS from the sensor to {host} in the firewall (the "
            "admin guide's outbound rules), or set entra.https_proxy when the sensor reaches "
            "the internet only through a proxy")
UNTRUSTED = ("the certificate is not trusted: when a proxy re-signs TLS, put its CA "
             "certificate (PEM) in entra.ca_bundle; also check the sensor's clock")


def endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _name(cert: dict[str, Any], field: str) -> str:
    for rdn in cert.get(field, ()):
        for key, value in rdn:
            if key == "commonName":
                return f"CN={value}"
    return "?"


class NetworkProbe:
    """DNS, TCP and TLS checks with ``entra.timeout`` and ``entra.ca_bundle``."""

    def __init__(self, entra: EntraSettings) -> None:
        self.entra = entra
        self.timeout = entra.timeout
        self.ssl = ssl_context(entra)

    async def dns(self, host: str) -> tuple[None, str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None), self.timeout)
        except TimeoutError:
            raise CheckFailed(f"no answer within {self.timeout:g} s", "check the DNS servers in "
                              "/etc/resolv.conf and that they resolve internet names") from None
        except OSError as exc:
            raise CheckFailed(f"cannot resolve: {exc.strerror or exc}",
                              "check the DNS servers in /etc/resolv.conf and that they "
                              f"resolve {host}, or set entra.https_proxy (the proxy resolves "
                              "names)") from None
        addresses = sorted({str(info[4][0]) for info in infos})
        return None, ", ".join(addresses[:4]) + (" ..." if len(addresses) > 4 else "")

    async def _open(self, host: str, port: int, fix: str) -> tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        except TimeoutError:
            raise CheckFailed(f"no answer within {self.timeout:g} s (dropped by a firewall?)",
                              fix) from None
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CheckFailed(f"cannot connect: {why}", fix) from None

    async def tcp(self, host: str, port: int, fix: str) -> tuple[None, str]:
        started = time.monotonic()
        _, writer = await self._open(host, port, fix)
        writer.close()
        return None, f"connected in {(time.monotonic() - started) * 1000:.0f} ms"

    async def tls(self, host: str, port: int, proxy: str | None,
                  login: str | None) -> tuple[None, str]:
        """TLS to ``host``, through a ``CONNECT`` tunnel of ``proxy`` (with the
        ``Proxy-Authorization`` value ``login``) when there is one (``proxy_for``)."""
        if proxy is None:
            reader, writer = await self._open(host, port, FIREWALL.format(host=f"{host}:{port}"))
            via = ""
        else:
            reader, writer = await self._tunnel(proxy, login, host, port)
            via = f" via proxy {endpoint(proxy)[0]}:{endpoint(proxy)[1]}"
        try:
            await asyncio.wait_for(writer.start_tls(self.ssl, server_hostname=host),
                                   self.timeout)
            tls = writer.get_extra_info("ssl_object")
            cert = tls.getpeercert() if tls is not None else {}
            version = tls.version() if tls is not None else "?"
        except ssl.SSLCertVerificationError as exc:
            raise CheckFailed(f"certificate rejected{via}: {exc.verify_message or exc.reason}",
                              UNTRUSTED) from None
        except (ssl.SSLError, ConnectionError) as exc:
            raise CheckFailed(f"TLS handshake failed{via}: {exc}", "something between the sensor "
                              f"and {host} interferes with TLS: check the firewall or proxy's TLS "
                              "inspection rules") from None
        except TimeoutError:
            raise CheckFailed(f"TLS handshake timed out{via}",
                              FIREWALL.format(host=f"{host}:{port}")) from None
        finally:
            writer.close()
        trust = str(self.entra.ca_bundle) if self.entra.ca_bundle else "the system CA store"
        return None, (f"{version}{via}, certificate {_name(cert, 'subject')} issued by "
                      f"{_name(cert, 'issuer')}, trusted by {trust}")

    async def _tunnel(self, proxy: str, login: str | None, host: str,
                      port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        p_host, p_port = endpoint(proxy)
        reader, writer = await self._open(p_host, p_port, "check entra.https_proxy (or "
                                          f"HTTPS_PROXY): nothing answers at {p_host}:{p_port}")
        if urlsplit(proxy).scheme == "https":
            await writer.start_tls(ssl.create_default_context(), server_hostname=p_host)
        auth = f"Proxy-Authorization: {login}\r\n" if login else ""
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n"
                     .encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                OSError):
            writer.close()
            raise CheckFailed(f"the proxy {p_host}:{p_port} did not answer CONNECT {host}:{port}",
                              "check that entra.https_proxy is an HTTP proxy") from None
        status = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
        code = status.split(" ")[1] if status.count(" ") >= 1 else ""
        if code != "200":
            writer.close()
            fix = (f"allow CONNECT to {host}:{port} for the sensor on the proxy (the admin "
                   "guide's outbound rules)")
            if code == "407" and login:
                raise CheckFailed(f"the proxy refused the login for CONNECT {host}:{port}: "
                                  f"{status}", "check the user and password in "
                                  "entra.https_proxy (or HTTPS_PROXY)")
            if code == "407":
                raise CheckFailed(f"the proxy asks for a login for CONNECT {host}:{port}: "
                                  f"{status}", "put user:password@ in entra.https_proxy "
                                  "(percent-encode @ : / in them), e.g. "
                                  "http://user:password@proxy:3128")
            raise CheckFailed(f"the proxy refused CONNECT {host}:{port}: {status}", fix)
        return reader, writer
