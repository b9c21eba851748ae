"""The provider as a server: the preamble every endpoint shares (agent/devidp/endpoint.py),
faults, TLS material and the lifecycle (agent/devidp/server.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from agent.devidp import ENDPOINTS, DevIdentityProvider, Fault
from tests.devidp.helpers import CLIENT, REDIRECT, TENANT, get, redeem, sign_in
from tests.devidp_driver import parse_page

# name -> (method, path with {t} for the tenant, how another tenant is refused)
ROUTES: dict[str, tuple[str, str, str | None]] = {
    "discovery": ("GET", "/{t}/v2.0/.well-known/openid-configuration", "json"),
    "jwks": ("GET", "/{t}/discovery/v2.0/keys", "json"),
    "authorize": ("GET", "/{t}/oauth2/v2.0/authorize", "html"),
    "login": ("POST", "/{t}/login", "html"),
    "mfa": ("POST", "/{t}/mfa", "html"),
    "token": ("POST", "/{t}/oauth2/v2.0/token", "json"),
    "logout": ("GET", "/{t}/oauth2/v2.0/logout", "html"),
    "graph_me": ("GET", "/v1.0/me", None),
    "graph_check_member_groups": ("POST", "/v1.0/me/checkMemberGroups", None),
    "graph_get_member_objects": ("POST", "/v1.0/me/getMemberObjects", None),
    "userinfo": ("GET", "/oidc/userinfo", None),
}


async def call(idp: DevIdentityProvider, http: aiohttp.ClientSession, name: str,
               tenant: str = TENANT) -> tuple[int, str]:
    method, path, _ = ROUTES[name]
    async with http.request(method, idp.url + path.format(t=tenant), allow_redirects=False,
                            ssl=idp.client_ssl_context()) as resp:
        return resp.status, await resp.text()


class TestPreamble:
    def test_every_endpoint_is_listed_here(self) -> None:
        """Each endpoint name but the final redirect has a route in this table."""
        assert set(ENDPOINTS) - {"authorize_response"} == set(ROUTES)

    @pytest.mark.parametrize("name", sorted(ROUTES))
    async def test_counts_and_answers_a_fault_first(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession, name: str) -> None:
        """Every request is counted under the endpoint's name; a fault answers before the
        handler, and a one-time fault then removes itself."""
        idp.faults[name] = Fault(status=418, body=b"teapot", times=1)
        assert (418, "teapot") == await call(idp, http, name)
        assert 418 != (await call(idp, http, name))[0]
        assert 2 == idp.requests[name]

    @pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if r[2] is not None))
    async def test_another_tenant_is_aadsts90002(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession, name: str) -> None:
        """A path naming another tenant gets AADSTS90002: JSON for clients, a page for
        people."""
        status, text = await call(idp, http, name, tenant="other-tenant")
        assert 400 == status
        if ROUTES[name][2] == "html":
            assert "AADSTS90002" == parse_page(text).texts["error-code"]
        else:
            assert text.startswith('{"error": "invalid_tenant"')


class TestFaults:
    async def test_fault_kinds(self, idp: DevIdentityProvider,
                               http: aiohttp.ClientSession) -> None:
        """A fault can replace the body, add headers, or only delay the normal answer."""
        idp.faults["jwks"] = Fault(status=200, body=b"not json{", content_type="text/plain")
        assert (await get(idp, http, idp.jwks_uri))[1] == "not json{"
        idp.faults["graph_me"] = Fault(status=429, headers={"Retry-After": "1"}, body=b"{}")
        status, _, resp = await get(idp, http, f"{idp.graph_url}/v1.0/me")
        assert status == 429 and resp.headers["Retry-After"] == "1"
        idp.faults["discovery"] = Fault(delay=0.3)
        started = time.monotonic()
        assert (await get(idp, http, idp.discovery_url))[0] == 200
        assert time.monotonic() - started >= 0.3

    async def test_token_fault_does_not_use_the_code(self, idp: DevIdentityProvider,
                                                     http: aiohttp.ClientSession) -> None:
        """A faulted token request leaves the code redeemable."""
        query, verifier = await sign_in(idp, http)
        idp.faults["token"] = Fault(status=503, times=1)
        assert (await redeem(idp, http, query["code"], verifier))[0] == 503
        assert (await redeem(idp, http, query["code"], verifier))[0] == 200

    def test_unknown_endpoint_and_reset(self, idp: DevIdentityProvider) -> None:
        """A misspelt endpoint name raises; reset_misbehaviour clears the faults."""
        with pytest.raises(KeyError):
            idp.faults["tokne"] = Fault(status=500)
        idp.faults["token"] = Fault(status=500)
        idp.reset_misbehaviour()
        assert not idp.faults


class TestTls:
    async def test_certificate_for_ip_and_localhost(self, idp: DevIdentityProvider,
                                                    http: aiohttp.ClientSession) -> None:
        """The throwaway CA's certificate verifies for 127.0.0.1 and localhost; the system
        trust store does not know it."""
        assert idp.ca_file.read_bytes() == idp.ca_pem
        for host in ("127.0.0.1", "localhost"):
            port = urlsplit(idp.url).port
            _, writer = await asyncio.open_connection("127.0.0.1", port,
                                                      ssl=idp.client_ssl_context(),
                                                      server_hostname=host)
            writer.close()
            await writer.wait_closed()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(idp.jwks_uri)


class TestLifecycle:
    async def test_binds_loopback_only_and_comes_back(self) -> None:
        """Addresses exist only while started; stop frees the port and the CA file; a
        restart on the same port serves with the same CA."""
        idp = DevIdentityProvider(TENANT, CLIENT, [REDIRECT], [])
        with pytest.raises(RuntimeError):
            _ = idp.url
        await idp.start()
        port = int(urlsplit(idp.url).port or 0)
        assert idp.url == idp.authority_host == idp.graph_url == f"https://127.0.0.1:{port}"
        ca_file = idp.ca_file
        assert ca_file.exists()
        await idp.stop()
        assert not ca_file.exists()
        with socket.socket() as sock, pytest.raises(OSError):
            sock.settimeout(1)
            sock.connect(("127.0.0.1", port))
        await idp.start(port=port)
        try:
            async with aiohttp.ClientSession() as http:
                status, _, _ = await get(idp, http, idp.discovery_url)
            assert status == 200 and idp.ca_file.read_bytes() == idp.ca_pem
        finally:
            await idp.stop()
        assert isinstance(idp.client_ssl_context(), ssl.SSLContext)
