"""A discovery document naming another issuer: the agent is not ready, signs no one in."""

from __future__ import annotations

import pytest

from tests.harness import Stack, StackFactory
from tests.security.conftest import discovery_answered

OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


async def readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    browser = stack.browser()
    resp = await browser.get("/readyz")
    return resp.status, await resp.json()


@pytest.mark.parametrize("issuer", [
    "https://{host}/" + OTHER_TENANT + "/v2.0",
    "https://{host}/common/v2.0",
    "https://{host}/{{tenantid}}/v2.0",
    "http://{host}/{tenant}/v2.0",
    "https://{host}/{tenant}/v2.0/",
])
async def test_foreign_issuer_means_not_ready(new_stack: StackFactory, issuer: str) -> None:
    """Discovery issuer not exactly this tenant's: /readyz 503, no sign-in."""
    stack = await new_stack(start=False)
    host = stack.idp.url.removeprefix("https://")
    stack.idp.token_tweaks.discovery_issuer = issuer.format(
        host=host, tenant=stack.settings.entra.tenant_id)
    await stack.start_agent(wait_ready=False)
    await discovery_answered(stack)
    status, body = await readyz(stack)
    assert 503 == status
    assert "issuer" in body["reason"] and "entra.tenant_id" in body["reason"]
    browser = stack.browser()
    resp = await browser.get("/auth/sso/start")
    assert 502 == resp.status
    assert "What to do:" in await resp.text()
    assert 0 == stack.idp.requests["authorize"]
    login = await browser.get("/login")
    assert 200 == login.status and "cannot reach Entra ID" in await login.text()


async def test_own_issuer_is_ready(stack: Stack) -> None:
    """The control case: this tenant's issuer → ready."""
    status, body = await readyz(stack)
    assert (200, "ready") == (status, body["status"])
