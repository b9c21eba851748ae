"""Sovereign clouds, and Web platform app registrations (secret, certificate, mismatches)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.entra.client import EntraClient
from agent.errors import ConfigError
from agent.settings import settings_from_mapping
from tests.fleet.helpers import block, client_certificate, fleet
from tests.harness import CLIENT, TENANT, StackFactory

SENSOR = {"name": "s-01", "site": "shanghai", "zone": "z1"}


def entra(**keys: object) -> dict[str, object]:
    return {"entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": "https://sensor.example/cb", **keys},
            "roles": {"admin": ["aaaaaaaa-0000-4000-8000-000000000001"]}}


class TestSovereignClouds:
    def test_china_setting_resolves_china_hosts(self) -> None:
        """A China-cloud setting talks to login.partner.microsoftonline.cn and its Graph."""
        data = entra()
        fleet(SENSOR, block("Shanghai", sites=["shanghai"], entra={"cloud": "china"}))(data)
        settings = settings_from_mapping(data)
        assert ("https://login.partner.microsoftonline.cn",
                "https://microsoftgraph.chinacloudapi.cn") == (
            settings.entra.authority_host, settings.entra.graph_url)
        assert f"https://login.partner.microsoftonline.cn/{TENANT}" == settings.entra.authority
        assert ["https://microsoftgraph.chinacloudapi.cn/.default"] == \
            EntraClient(settings.entra).scopes

    @pytest.mark.parametrize(("cloud", "authority", "graph"), [
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ("public", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
    ])
    def test_other_clouds(self, cloud: str, authority: str, graph: str) -> None:
        """Each cloud name sets both hosts."""
        settings = settings_from_mapping(entra(cloud=cloud))
        assert (authority, graph) == (settings.entra.authority_host, settings.entra.graph_url)

    def test_explicit_hosts_win(self) -> None:
        """authority_host and graph_url given explicitly beat the cloud's hosts."""
        settings = settings_from_mapping(entra(cloud="china",
                                               authority_host="https://login.proxy.example",
                                               graph_url="https://graph.proxy.example"))
        assert ("https://login.proxy.example", "https://graph.proxy.example") == (
            settings.entra.authority_host, settings.entra.graph_url)

    def test_unknown_cloud(self) -> None:
        """A misspelt cloud names the choices."""
        with pytest.raises(ConfigError, match="public, usgov, usgov-dod, china"):
            settings_from_mapping(entra(cloud="gov"))


class TestWebPlatform:
    async def test_client_secret(self, tmp_path: Path, new_stack: StackFactory) -> None:
        """A Web platform app redeems with its client secret and no Origin header."""
        secret = tmp_path / "client-secret"
        secret.write_text("s3cr3t-value~from-the-portal\n")
        stack = await new_stack(
            idp_options={"spa": False, "client_secret": "s3cr3t-value~from-the-portal"},
            config=lambda d: d["entra"].update(platform="web", client_secret_file=str(secret)))
        resp = await stack.browser().sign_in("admin@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert stack.idp.last_token_origin is None

    async def test_client_certificate(self, tmp_path: Path, new_stack: StackFactory) -> None:
        """A Web platform app redeems with a private-key JWT assertion MSAL signs."""
        path, cert_pem = client_certificate(tmp_path)
        stack = await new_stack(
            idp_options={"spa": False, "client_certificate_pem": cert_pem},
            config=lambda d: d["entra"].update(platform="web",
                                    client_certificate_file=str(path)))
        resp = await stack.browser().sign_in("admin@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert stack.idp.last_token_origin is None

    async def test_wrong_secret_is_explained(self, tmp_path: Path, new_stack: StackFactory) -> None:
        """A wrong secret is a 500 page (a configuration problem: the sensor's own credential)
        with Entra's code."""
        secret = tmp_path / "client-secret"
        secret.write_text("old-secret")
        stack = await new_stack(
            idp_options={"spa": False, "client_secret": "new-secret"},
            config=lambda d: d["entra"].update(platform="web", client_secret_file=str(secret)))
        resp = await stack.browser().sign_in("admin@contoso.example")
        assert 503 == resp.status
        assert "AADSTS7000215" in await resp.text()

    async def test_secret_file_gone_is_a_configuration_problem(
            self, tmp_path: Path, new_stack: StackFactory) -> None:
        """A client secret file the agent can no longer read: the sign-in's start (where MSAL
        is built with the credential) answers 500 with the configuration fix, not 502 "Entra
        ID unreachable"."""
        secret = tmp_path / "client-secret"
        secret.write_text("s3cr3t-value\n")
        stack = await new_stack(
            idp_options={"spa": False, "client_secret": "s3cr3t-value"},
            config=lambda d: d["entra"].update(platform="web", client_secret_file=str(secret)))
        secret.unlink()
        with capture_logs() as logs:
            resp = await stack.browser().get("/auth/sso/start")
            page = await resp.text()
        assert 503 == resp.status, page
        assert "Sign-in is not set up correctly" in page and "is unreachable" not in page
        assert "client credential" in page
        [refused] = [e for e in logs if e["event"] == "sso_login_refused"]
        assert ("client_credential_unreadable", 503) == (refused["reason"], refused["status"])

    async def test_spa_config_against_web_registration(self, new_stack: StackFactory) -> None:
        """Config says SPA, the registration says Web: a 500 (the sensor's own setup) whose
        AADSTS9002326 page names the fix."""
        stack = await new_stack(idp_options={"spa": False, "client_secret": "x"})
        resp = await stack.browser().sign_in("admin@contoso.example")
        page = await resp.text()
        assert 503 == resp.status
        assert "AADSTS9002326" in page
        assert "entra.platform" in page and "Single-page application" in page

    async def test_web_config_against_spa_registration(
            self, tmp_path: Path, new_stack: StackFactory) -> None:
        """Config says Web, the registration is an SPA: 500, the page says to set platform
        spa."""
        secret = tmp_path / "client-secret"
        secret.write_text("s3cr3t")
        stack = await new_stack(config=lambda d: d["entra"].update(
            platform="web", client_secret_file=str(secret)))
        resp = await stack.browser().sign_in("admin@contoso.example")
        page = await resp.text()
        assert 503 == resp.status
        assert "AADSTS700025" in page and "entra.platform = &#34;spa&#34;" in page

    def test_web_needs_exactly_one_credential(self, tmp_path: Path) -> None:
        """platform = "web" without a secret or certificate is a config error."""
        with pytest.raises(ConfigError, match="exactly one of client_secret_file"):
            settings_from_mapping(entra(platform="web"))

    def test_spa_with_a_secret_is_refused(self, tmp_path: Path) -> None:
        """A secret on an SPA config is a mistake the file check names."""
        secret = tmp_path / "s"
        secret.write_text("x")
        with pytest.raises(ConfigError, match="public client"):
            settings_from_mapping(entra(client_secret_file=str(secret)))
