"""check-connectivity against the local identity provider: directly, through a CONNECT proxy,
and failing clearly (wrong CA, unreachable or unknown host, a proxy that refuses)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.connectivity.check import run_checks
from agent.devidp import DevIdentityProvider
from agent.entra.outbound import MsalHttpClient
from agent.settings import settings_from_mapping
from tests.deploy.support import (
    PROXY_LOGIN,
    REPO,
    ConnectProxy,
    agent_config_for,
    free_port,
    url_with_login,
    write_ca,
    write_config,
)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.lower() in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    p = ConnectProxy()
    await p.start()
    yield p
    await p.stop()


async def check(idp: DevIdentityProvider, tmp_path: Path, **entra: Any) -> tuple[int, list[str]]:
    data = agent_config_for(idp, free_port(), tmp_path / "state")
    data["entra"].update(entra)
    out = io.StringIO()
    status = await run_checks(settings_from_mapping(data), out)
    return status, out.getvalue().splitlines()


def line(lines: list[str], word: str, check: str) -> str:
    found = [ln for ln in lines if ln.split()[:2] == [word, check]]
    assert found, "\n".join(lines)
    return found[0]


def fix_after(lines: list[str], failed: str) -> str:
    follower = lines[lines.index(failed) + 1]
    assert follower.split()[0] == "fix:", follower
    return follower


async def test_the_command_passes_every_check_against_the_local_provider(
        idp: DevIdentityProvider, tmp_path: Path) -> None:
    """check-connectivity, run as the operator runs it, passes every step against the local
    provider."""
    config = write_config(tmp_path / "agent.toml",
                          agent_config_for(idp, free_port(), tmp_path / "state"))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = await _run([sys.executable, "-m", "agent", "check-connectivity", "--config",
                       str(config)], env)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = [ln.split()[1] for ln in lines[:-1]]
    assert checks == ["dns", "tcp", "tls", "discovery", "jwks", "token", "graph"]
    assert all(ln.startswith("OK ") for ln in lines[:-1]), proc.stdout
    assert lines[-1] == "check-connectivity: all 7 checks passed"
    assert "answered 401 without a token (reachable)" in line(lines, "OK", "graph")
    assert "issuer " + idp.issuer in line(lines, "OK", "discovery")


async def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, argv, cwd=REPO, env=env, text=True,
                                   capture_output=True, timeout=60, check=False)


async def test_through_the_configured_proxy(idp: DevIdentityProvider, tmp_path: Path,
                                            proxy: ConnectProxy) -> None:
    """With entra.https_proxy every step goes through the proxy's tunnels and says so."""
    status, lines = await check(idp, tmp_path, https_proxy=proxy.url)
    assert status == 0, "\n".join(lines)
    assert f"127.0.0.1:{proxy.port} (proxy)" in line(lines, "OK", "tcp")
    assert f"via proxy 127.0.0.1:{proxy.port}" in line(lines, "OK", "tls")
    target = idp.url.removeprefix("https://")
    # the TLS check, the agent's own client (discovery, JWKS, Graph) and MSAL's (token)
    assert proxy.tunnels.count(target) >= 3


async def test_through_the_environment_proxy(idp: DevIdentityProvider, tmp_path: Path,
                                             proxy: ConnectProxy,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY from the environment is used when entra.https_proxy is not set."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    status, lines = await check(idp, tmp_path)
    assert status == 0, "\n".join(lines)
    assert "via proxy" in line(lines, "OK", "tls")
    assert proxy.tunnels


async def test_no_proxy_exempts_a_host_from_the_environment_proxy(
        idp: DevIdentityProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host in NO_PROXY is reached directly, never through the environment's proxy."""
    refusing = ConnectProxy(refuse=True)
    await refusing.start()
    monkeypatch.setenv("HTTPS_PROXY", refusing.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        status, lines = await check(idp, tmp_path)
    finally:
        await refusing.stop()
    assert status == 0, "\n".join(lines)
    assert "via proxy" not in line(lines, "OK", "tls")


async def test_a_proxy_that_refuses_the_tunnel(idp: DevIdentityProvider, tmp_path: Path) -> None:
    """A proxy refusing CONNECT fails the tls step with the proxy's answer and a fix."""
    refusing = ConnectProxy(refuse=True)
    await refusing.start()
    try:
        status, lines = await check(idp, tmp_path, https_proxy=refusing.url)
    finally:
        await refusing.stop()
    assert status == 1
    failed = line(lines, "FAIL", "tls")
    assert "the proxy refused CONNECT" in failed and "403" in failed
    assert "allow CONNECT" in fix_after(lines, failed)


async def test_a_wrong_ca_bundle_fails_tls_and_says_what_to_do(
        idp: DevIdentityProvider, tmp_path: Path) -> None:
    """A CA bundle that does not trust the provider fails tls, names entra.ca_bundle, skips the
    rest."""
    status, lines = await check(idp, tmp_path, ca_bundle=str(write_ca(tmp_path)))
    assert status == 1
    failed = line(lines, "FAIL", "tls")
    assert "certificate rejected" in failed
    assert "entra.ca_bundle" in fix_after(lines, failed)
    assert line(lines, "SKIP", "discovery")
    assert lines[-1].startswith("check-connectivity: 1 of ")


async def test_an_unreachable_host_fails_tcp(idp: DevIdentityProvider, tmp_path: Path) -> None:
    """A closed port fails tcp with the firewall fix; Graph, still reachable, passes."""
    closed = f"https://127.0.0.1:{free_port()}"
    status, lines = await check(idp, tmp_path, authority_host=closed)
    assert status == 1
    failed = line(lines, "FAIL", "tcp")
    assert "Connection refused" in failed
    assert "firewall" in fix_after(lines, failed)
    assert line(lines, "OK", "graph")  # Graph (the provider) is still reachable


async def test_an_unknown_host_fails_dns_and_a_wrong_tenant_fails_discovery(
        idp: DevIdentityProvider, tmp_path: Path) -> None:
    """An unknown host fails dns; a tenant Entra ID does not know fails discovery (AADSTS90002)."""
    status, lines = await check(idp, tmp_path, graph_url="https://graph.nonexistent.invalid",
                                tenant_id="11111111-2222-3333-4444-555555555555")
    assert status == 1
    assert "cannot resolve" in line(lines, "FAIL", "dns")
    failed = line(lines, "FAIL", "discovery")
    assert "AADSTS90002" in fix_after(lines, failed)
    assert "entra.tenant_id" in fix_after(lines, failed)


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"])
async def test_msal_client_reads_the_environment_proxy_once(
        idp: DevIdentityProvider, tmp_path: Path, proxy: ConnectProxy,
        monkeypatch: pytest.MonkeyPatch, no_proxy: str | None) -> None:
    """MSAL's HTTP client takes HTTPS_PROXY / NO_PROXY from the environment when it is built
    (not on every request): a token request goes through the proxy, unless the authority's
    host is exempt."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    settings = settings_from_mapping(agent_config_for(idp, free_port(), tmp_path / "state"))
    client = MsalHttpClient(settings.entra, None)
    try:
        resp = await asyncio.to_thread(
            client.post, f"{settings.entra.authority}/oauth2/v2.0/token", data={})
    finally:
        client.close()
    assert 400 == resp.status_code
    assert (0 if no_proxy else 1) == proxy.tunnels.count(idp.url.removeprefix("https://"))


SECRETS = ("Pl@nt:Pr0xy pw", "Pl%40nt%3APr0xy%20pw", base64.b64encode(b"svc-sensor:Pl@nt:Pr0xy pw")
           .decode())


@pytest.mark.parametrize("source", ["setting", "environment"])
async def test_through_a_proxy_that_asks_for_a_login(
        idp: DevIdentityProvider, tmp_path: Path, login_proxy: ConnectProxy,
        monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Every check (the CONNECT probe, the agent's client, MSAL's) logs in to the proxy; the
    password shows nowhere in the output."""
    url = url_with_login(login_proxy, *PROXY_LOGIN)
    if source == "environment":
        monkeypatch.setenv("HTTPS_PROXY", url)
        status, lines = await check(idp, tmp_path)
    else:
        status, lines = await check(idp, tmp_path, https_proxy=url)
    assert status == 0, "\n".join(lines)
    assert f"via proxy 127.0.0.1:{login_proxy.port}" in line(lines, "OK", "tls")
    assert login_proxy.tunnels.count(idp.url.removeprefix("https://")) >= 3
    assert login_proxy.logins and all(login_proxy.logins)
    assert not any(s in "\n".join(lines) for s in SECRETS)


@pytest.mark.parametrize(("password", "says", "fix"), [
    (None, "asks for a login", "put user:password@ in entra.https_proxy"),
    ("wrong-Pr0xy-pw", "refused the login", "check the user and password")])
async def test_a_proxy_login_missing_or_wrong(
        idp: DevIdentityProvider, tmp_path: Path, login_proxy: ConnectProxy,
        password: str | None, says: str, fix: str) -> None:
    """A proxy asking for a login (407) fails tls, says whether to add or check it, shows no
    password."""
    url = login_proxy.url if password is None else url_with_login(login_proxy, PROXY_LOGIN[0],
                                                                  password)
    status, lines = await check(idp, tmp_path, https_proxy=url)
    assert status == 1
    failed = line(lines, "FAIL", "tls")
    assert "407" in failed and says in failed, failed
    assert fix in fix_after(lines, failed)
    assert not any(s in "\n".join(lines) for s in (*SECRETS, "wrong-Pr0xy-pw"))
    assert [None if password is None else False] == login_proxy.logins[:1]
