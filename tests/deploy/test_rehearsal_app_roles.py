"""``sensor-sso-agent devidp`` mirrors an agent on ``[roles] source = "app_roles"``: the
provider defines the mapped values as app roles and its users' ID tokens carry them."""

from __future__ import annotations

from pathlib import Path

from agent.rehearsal import banner, provider_for
from agent.settings import settings_from_mapping
from tests.clock import Clock
from tests.harness import CLIENT, TENANT, Stack, free_port

MAPPING = {"source": "app_roles", "admin": ["Sensor.Admin"],
           "security_analyst": ["Sensor.SecurityAnalyst"], "read_only": ["Sensor.ReadOnly"]}


async def test_rehearsal_provider_gives_app_roles(tmp_path: Path) -> None:
    """An agent on app roles, pointed at the rehearsal provider, signs in the admin and the
    analyst with their roles from the roles claim and refuses the user in no group."""
    port = free_port()
    data = {"entra": {"tenant_id": TENANT, "client_id": CLIENT,
                      "redirect_uri": f"http://127.0.0.1:{port}/auth/sso/callback"},
            "roles": dict(MAPPING), "session": {"state_dir": str(tmp_path / "state")}}
    mirrored = settings_from_mapping(data)
    state_dir = tmp_path / "devidp"
    state_dir.mkdir(mode=0o755)
    idp, password, new_ca = provider_for(mirrored, [], state_dir, "127.0.0.1")
    assert new_ca
    assert set(idp.app_roles) == {"Sensor.Admin", "Sensor.SecurityAnalyst", "Sensor.ReadOnly"}
    await idp.start()
    printed = banner(idp, mirrored, password, new_ca, "agent.toml").splitlines()
    line = next(ln for ln in printed if ln.strip().startswith("analyst@contoso.example"))
    assert "security_analyst" in line  # through its group's app role
    entra = data["entra"]
    assert isinstance(entra, dict)
    entra.update(authority_host=idp.authority_host, graph_url=idp.graph_url,
                         ca_bundle=str(idp.ca_file))
    stack = Stack(idp=idp, settings=settings_from_mapping(data), clock=Clock(), port=port)
    try:
        await stack.start_agent()
        for username, role in (("admin@contoso.example", "admin"),
                               ("analyst@contoso.example", "security_analyst")):
            browser = stack.browser()
            assert 302 == (await browser.sign_in(username, password=password)).status
            assert role == (await browser.get("/auth/check")).headers["X-Auth-Request-Role"]
        refused = await stack.browser().sign_in("nogroup@contoso.example", password=password)
        assert 403 == refused.status
        assert 0 == sum(n for k, n in idp.requests.items() if k.startswith("graph_check"))
    finally:
        await stack.close()
