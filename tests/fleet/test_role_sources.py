"""One fleet file, two role sources: a setting on groups and a setting on app roles, each
judged through the local provider by the sensor it applies to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.settings import settings_from_mapping
from tests.fleet.helpers import block, fleet
from tests.harness import StackFactory, agent_config

HAMBURG = {"name": "s-07", "site": "hamburg", "zone": "packaging"}
HOUSTON = {"name": "s-31", "site": "houston", "zone": "boiler"}
ANALYST, READER = "analyst@contoso.example", "reader@contoso.example"
APP_ROLE_MAPPING = {"source": "app_roles", "admin": ["Sensor.Admin"],
                    "read_only": ["Sensor.ReadOnly"]}


def two_sources(sensor: dict[str, str]) -> Any:
    """Hamburg decides roles by groups (the default), Houston by app roles."""
    return fleet(sensor, block("EU", sites=["hamburg"]),
                 block("US", sites=["houston"], roles=APP_ROLE_MAPPING))


async def test_groups_here_app_roles_there(new_stack: StackFactory, tmp_path: Path) -> None:
    """The analyst (analyst group, app role Sensor.Admin) is security_analyst on the groups
    sensor and admin on the app roles sensor; the reader (read-only group, no app role) gets
    in on the first and is refused with no_app_role on the second."""
    stack = await new_stack(config=two_sources(HAMBURG), idp_options={
        "app_roles": {"Sensor.Admin": "Sensor Admin", "Sensor.ReadOnly": "Read only"}})
    analyst = stack.idp.user_by_username(ANALYST)
    assert analyst is not None
    analyst.app_roles = ["Sensor.Admin"]
    assert "groups" == stack.settings.roles_source

    hamburg = {}
    for username in (ANALYST, READER):
        browser = stack.browser()
        assert 302 == (await browser.sign_in(username)).status
        hamburg[username] = (await browser.get("/auth/check")).headers["X-Auth-Request-Role"]
    assert {ANALYST: "security_analyst", READER: "read_only"} == hamburg

    await stack.stop_agent()
    data = agent_config(stack.idp, stack.port, tmp_path / "state")  # the same file ...
    two_sources(HOUSTON)(data)  # ... on a sensor of the Houston site
    houston = settings_from_mapping(data)
    assert ("US", "app_roles") == (houston.fleet and houston.fleet.setting,
                                   houston.roles_source)
    await stack.start_agent(houston)
    graph_before = sum(n for k, n in stack.idp.requests.items() if k.startswith("graph_"))
    browser = stack.browser()
    assert 302 == (await browser.sign_in(ANALYST)).status
    assert "admin" == (await browser.get("/auth/check")).headers["X-Auth-Request-Role"]
    with capture_logs() as logs:
        assert 403 == (await stack.browser().sign_in(READER)).status
    assert ["no_app_role"] == [e["reason"] for e in logs if e["event"] == "sso_login_refused"]
    assert graph_before == sum(n for k, n in stack.idp.requests.items()
                               if k.startswith("graph_"))
