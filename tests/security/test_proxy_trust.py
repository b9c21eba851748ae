"""Who the client is: X-Forwarded-For only from trusted proxies, read from the right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.clientaddr import ProxyTrust, client_key, exposure_warnings
from agent.errors import ConfigError
from agent.settings import mask_credentials, settings_from_mapping
from tests.harness import ROLE_GROUPS, Browser, Stack, write_config

ROOT = Path(__file__).resolve().parents[2]
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b5b0b4e-3c8b-4bfb-8f0e-6c0f1c2d3e4f"


def config(**server: object) -> dict[str, dict[str, object]]:
    return {"server": dict(server),
            "entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://sensor.contoso.example/auth/sso/callback"},
            "roles": {k: list(v) for k, v in ROLE_GROUPS.items()}}


def check_config(tmp_path: Path, data: dict[str, dict[str, object]]
                 ) -> subprocess.CompletedProcess[str]:
    path = write_config(tmp_path / "agent.toml", data)
    return run_agent("check-config", "--config", str(path))


def run_agent(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *argv],  # noqa: S603 - our module
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)


async def from_source(browser: Browser, address: str) -> Browser:
    """Make ``browser`` connect from ``address`` (Linux routes all of 127/8 to lo)."""
    old = browser.http
    browser.http = aiohttp.ClientSession(
        cookie_jar=old.cookie_jar, connector=aiohttp.TCPConnector(local_addr=(address, 0)))
    await old.close()
    return browser


class TestProxyTrust:
    trust = ProxyTrust(["127.0.0.1", "::1", "10.1.0.0/16"])

    def test_untrusted_peer_is_the_client(self) -> None:
        """A peer that is not a trusted proxy is the client, whatever it forwards."""
        assert "192.0.2.7" == self.trust.client("192.0.2.7", "203.0.113.9")

    def test_right_most_untrusted_entry(self) -> None:
        """From a trusted peer, the right-most entry that is not a trusted proxy wins; what
        the client wrote further left is never read."""
        assert "198.51.100.4" == self.trust.client("127.0.0.1", "1.2.3.4, 198.51.100.4")
        assert "198.51.100.4" == self.trust.client(
            "127.0.0.1", "1.2.3.4, 198.51.100.4, 10.1.2.3, 127.0.0.1")

    def test_all_hops_trusted(self) -> None:
        """A chain of trusted hops only: the one furthest from the agent."""
        assert "10.1.9.9" == self.trust.client("127.0.0.1", "10.1.9.9, 127.0.0.1")

    def test_garbage_entry_stops_at_the_last_known_hop(self) -> None:
        """An entry that is not an address is never taken as a client's identity."""
        assert "10.1.0.5" == self.trust.client("127.0.0.1", "1.2.3.4, not-an-ip, 10.1.0.5")
        assert "127.0.0.1" == self.trust.client("127.0.0.1", "  ")

    def test_ipv4_mapped_peer(self) -> None:
        """An IPv4 peer on a dual-stack socket (::ffff:127.0.0.1) is the same trusted proxy."""
        assert "192.0.2.1" == self.trust.client("::ffff:127.0.0.1", "192.0.2.1")

    def test_nothing_trusted(self) -> None:
        """With no trusted proxy the header is never read."""
        assert "127.0.0.1" == ProxyTrust([]).client("127.0.0.1", "192.0.2.1")

    def test_ipv6_clients_grouped_by_64(self) -> None:
        """Limits count an IPv6 client as its /64; IPv4 addresses one by one."""
        assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
        assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
        assert "192.0.2.1" == client_key("192.0.2.1")


class TestSettings:
    def test_default_is_loopback(self) -> None:
        """Without the key, the local nginx is trusted."""
        assert ("127.0.0.1", "::1") == settings_from_mapping(config()).server.trusted_proxies

    def test_networks_and_bad_entries(self) -> None:
        """Addresses and networks are accepted; anything else is named."""
        settings = settings_from_mapping(config(trusted_proxies=["10.0.0.0/24", "::1"]))
        assert ("10.0.0.0/24", "::1/128") == settings.server.trusted_proxies
        with pytest.raises(ConfigError, match="trusted_proxies"):
            settings_from_mapping(config(trusted_proxies=["nginx.local"]))

    def test_deprecated_alias(self) -> None:
        """trust_forwarded_for = true is the loopback default, false trusts no proxy."""
        assert ("127.0.0.1", "::1") == settings_from_mapping(
            config(trust_forwarded_for=True)).server.trusted_proxies
        assert () == settings_from_mapping(
            config(trust_forwarded_for=False)).server.trusted_proxies

    def test_exposure_warning(self) -> None:
        """A non-loopback listen inside a trusted network is warned about; loopback is not."""
        assert exposure_warnings("10.0.0.5", ["10.0.0.0/24"])
        everywhere = "0.0.0.0"  # noqa: S104 - a listen value under test, nothing binds it
        assert exposure_warnings(everywhere, ["10.0.0.0/24"])
        assert not exposure_warnings(everywhere, ["127.0.0.1", "::1"])
        assert not exposure_warnings("127.0.0.1", ["0.0.0.0/0"])
        assert not exposure_warnings("10.0.0.5", ["10.9.0.0/24"])

    def test_check_config_names_the_alias_and_the_exposure(self, tmp_path: Path) -> None:
        """check-config stays valid (exit 0) but warns about both."""
        result = check_config(tmp_path, config(trust_forwarded_for=True, listen="0.0.0.0:8080",
                                               trusted_proxies=["10.0.0.0/8"]))
        assert 0 == result.returncode, result.stderr
        assert "trust_forwarded_for is deprecated" in result.stderr
        assert "10.0.0.0/8 includes the non-loopback listen address 0.0.0.0" in result.stderr

    def test_proxy_login_accepted_and_never_shown(self, tmp_path: Path) -> None:
        """A proxy URL with a login is valid; check-config does not echo the password."""
        data = config()
        data["entra"]["https_proxy"] = "http://svc-sensor:Hunter2Secret@proxy.plant.example:3128"
        result = check_config(tmp_path, data)
        assert 0 == result.returncode, result.stderr
        assert "Hunter2Secret" not in repr(settings_from_mapping(data))  # an exception's locals
        shown = run_agent("show-config", "--config", str(tmp_path / "agent.toml"))
        assert "https_proxy = 'http://***@proxy.plant.example:3128'" in shown.stdout
        for output in (result.stdout, result.stderr, shown.stdout, shown.stderr):
            assert "Hunter2Secret" not in output

    def test_proxy_password_masked(self, tmp_path: Path) -> None:
        """A refused proxy URL is named without its password, in check-config and serve."""
        data = config()
        data["entra"]["https_proxy"] = ("http://svc-sensor:Hunter2Secret@proxy.plant.example:3128"
                                        "/#frag")
        result = check_config(tmp_path, data)
        assert 1 == result.returncode
        assert "***@proxy.plant.example:3128" in result.stderr
        path = tmp_path / "agent.toml"
        served = run_agent("serve", "--config", str(path))
        assert 1 == served.returncode
        assert "***@proxy.plant.example" in served.stderr
        for output in (result.stdout, result.stderr, served.stdout, served.stderr):
            assert "Hunter2Secret" not in output and "svc-sensor" not in output

    def test_mask_credentials(self) -> None:
        """Credentials go even from URLs that do not parse."""
        assert "http://***@h:1/x" == mask_credentials("http://u:p@h:1/x")
        assert "http://***@h\\x" == mask_credentials("http://u:p@h\\x")
        assert "***@[::1" == mask_credentials("u:p@[::1")
        assert "http://h/a@b" == mask_credentials("http://h/a@b")


class TestThroughHttp:
    async def test_spoofed_header_from_an_untrusted_peer_ignored(self, stack: Stack) -> None:
        """A client at 127.0.0.2 (not a trusted proxy) is audited as itself."""
        browser = await from_source(stack.browser(), "127.0.0.2")
        with capture_logs() as logs:
            resp = await browser.get("/auth/sso/start", headers={"X-Forwarded-For": "192.0.2.1"})
        assert 302 == resp.status
        assert ["127.0.0.2"] == [e["source_ip"] for e in logs
                                 if e["event"] == "sso_login_started"]

    async def test_forwarded_address_from_the_proxy(self, stack: Stack) -> None:
        """From 127.0.0.1 (the proxy) the forwarded address is the client's."""
        browser = stack.browser()
        with capture_logs() as logs:
            resp = await browser.get("/auth/sso/start",
                                     headers={"X-Forwarded-For": "6.6.6.6, 192.0.2.1"})
        assert 302 == resp.status
        assert ["192.0.2.1"] == [e["source_ip"] for e in logs
                                 if e["event"] == "sso_login_started"]
