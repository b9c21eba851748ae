"""Signing in when the sensor reaches Entra ID only through a proxy that asks for a login
(Basic): ``entra.https_proxy = "http://user:password@proxy:3128"``. Every outbound call (the
agent's aiohttp client: discovery, JWKS, Graph; MSAL's requests: the token) goes through the
proxy and logs in on its CONNECT; a wrong password ends the sign-in with the agent's 502
page; the password appears in no log line, page or audit event."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

import pytest
from structlog.testing import capture_logs

from agent.web import keys
from tests.deploy.support import PROXY_LOGIN, ConnectProxy, url_with_login
from tests.harness import StackFactory

LOGIN = PROXY_LOGIN
READER = "reader@contoso.example"
WRONG = "wrong-Pr0xy-pw"
SECRETS = (LOGIN[1], quote(LOGIN[1], safe=""), WRONG,
           base64.b64encode(":".join(LOGIN).encode()).decode(),
           base64.b64encode(f"{LOGIN[0]}:{WRONG}".encode()).decode())


def proxy_url(proxy: ConnectProxy, password: str) -> str:
    return url_with_login(proxy, LOGIN[0], password)


def leaks(*texts: Any) -> list[str]:
    return [s for s in SECRETS if any(s in str(t) for t in texts)]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy",
                 "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("source", ["setting", "environment"])
async def test_sign_in_through_a_proxy_that_asks_for_a_login(
        new_stack: StackFactory, login_proxy: ConnectProxy, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """A sign-in through a proxy that asks for a login works (setting or environment); no log holds
    the password."""
    url = proxy_url(login_proxy, LOGIN[1])
    if source == "environment":
        monkeypatch.setenv("HTTPS_PROXY", url)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        stack = await new_stack(config=lambda d: d["entra"].update(
            {"https_proxy": url} if source == "setting" else {}))
        browser = stack.browser()
        resp = await browser.sign_in(READER)
        page = await resp.text()
    assert 302 == resp.status, page
    target = stack.idp.url.removeprefix("https://")
    # the agent's aiohttp client and MSAL's requests session each opened their own tunnel
    assert login_proxy.tunnels.count(target) >= 2 and set(login_proxy.tunnels) == {target}
    assert login_proxy.logins and all(login_proxy.logins)
    assert all(stack.idp.requests[name] for name in ("discovery", "jwks", "token")), \
        stack.idp.requests
    assert "sso_login_succeeded" in [e["event"] for e in logs]
    assert not leaks(logs, caplog.text, page, resp.headers)


async def test_a_wrong_proxy_password_fails_the_sign_in_clearly(
        new_stack: StackFactory, login_proxy: ConnectProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    """A wrong proxy password: the sign-in fails with a page and a reason that name the 407, no
    password."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        stack = await new_stack(start=False, config=lambda d: d["entra"].update(
            https_proxy=proxy_url(login_proxy, WRONG)))
        await stack.start_agent(wait_ready=False)
        browser = stack.browser()
        resp = await browser.get("/auth/sso/start")
        page = await resp.text()
        ready = await browser.get("/readyz")
        readyz = await ready.text()
    assert 502 == resp.status, page
    assert "What to do:" in page
    assert login_proxy.logins and not any(login_proxy.logins)
    assert 0 == sum(stack.idp.requests.values()), stack.idp.requests
    assert [e for e in logs if e["event"] == "identity_provider_not_ready"
            and "the proxy refused the login (HTTP 407)" in e["reason"]], logs
    assert 503 == ready.status and "check the user and password" in readyz
    assert not leaks(logs, caplog.text, page, resp.headers, readyz)


async def test_a_proxy_password_changed_under_a_running_agent(
        new_stack: StackFactory, login_proxy: ConnectProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    """The proxy's password changes (and its tunnels drop) after a first sign-in: the next
    code redemption (MSAL's new tunnel) is refused, the sign-in ends with the 502 page and
    an audited reason, neither holding the password."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        stack = await new_stack(config=lambda d: d["entra"].update(
            https_proxy=proxy_url(login_proxy, LOGIN[1])))
        assert 302 == (await stack.browser().sign_in(READER)).status
        redeemed = stack.idp.requests["token"]
        login_proxy.login = (LOGIN[0], "changed-by-the-proxy-team")
        login_proxy.drop_tunnels()
        resp = await stack.browser().sign_in(READER)
        page = await resp.text()
        readyz = await (await stack.browser().get("/readyz")).text()
    assert 502 == resp.status, page
    assert "the proxy refused the login (HTTP 407)" in readyz, readyz
    assert "because Entra ID is unreachable" in page and "What to do:" in page
    assert redeemed == stack.idp.requests["token"]
    refused = [e for e in logs if e["event"] == "sso_login_refused"]
    assert ["idp_unreachable"] == [e["reason"] for e in refused], refused
    assert False in login_proxy.logins
    assert not leaks(logs, caplog.text, page, resp.headers, readyz)


async def test_token_refresh_goes_through_the_proxy_with_its_login(
        new_stack: StackFactory, login_proxy: ConnectProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    """Re-validation's refresh (MSAL's requests) opens its tunnel with the login: while the
    proxy refuses the login no refresh reaches the provider; once it takes it, one does."""
    caplog.set_level(logging.DEBUG)

    def through_proxy(data: dict[str, Any]) -> None:
        data["entra"]["https_proxy"] = proxy_url(login_proxy, LOGIN[1])
        data["session"].update(revalidate_interval="10s", revalidate_grace="1h")

    with capture_logs() as logs:
        stack = await new_stack(config=through_proxy)
        browser = stack.browser()
        assert 302 == (await browser.sign_in(READER)).status
        assert stack.app is not None
        revalidator = stack.app[keys.REVALIDATOR]

        async def interval_until(event: str) -> MutableMapping[str, Any]:
            deadline = time.monotonic() + 15
            while not (found := [e for e in logs if e["event"] == event]):
                assert time.monotonic() < deadline, f"no {event}"
                stack.clock.advance(60)  # past the interval, and any backoff after a failure
                revalidator.wake()
                await asyncio.sleep(0.05)
            return found[0]

        login_proxy.login = (LOGIN[0], "changed-by-the-proxy-team")
        login_proxy.drop_tunnels()
        unavailable = await interval_until("revalidation_unavailable")
        assert 0 == stack.idp.requests["token_refresh"]  # refused at the proxy
        assert False in login_proxy.logins
        login_proxy.login = LOGIN
        await interval_until("revalidation_recovered")
        assert stack.idp.requests["token_refresh"] >= 1
        assert login_proxy.logins[-1] is True
    assert "the proxy refused the login (HTTP 407)" in str(unavailable), unavailable
    assert not leaks(logs, caplog.text)
