"""Roles from Entra app roles (``[roles] source = "app_roles"``) over real HTTP: the local
provider puts the assigned app roles' values in the ID token's ``roles`` claim, as Entra does,
and the agent decides from that claim alone (no Graph call for roles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.devidp import DevUser
from agent.devidp.refresh import assign_app_roles, assign_group_app_roles
from tests.harness import PASSWORD, ROLE_GROUPS, Stack, make_stack
from tests.signin.test_revalidation import (
    check_status,
    events,
    eventually,
    one_interval_later,
    role,
    signed_in,
)

APP_ROLES = {"Sensor.Admin": "Sensor Admin", "Sensor.SecurityAnalyst": "Security analyst",
             "Sensor.ReadOnly": "Read only", "Historian.Reader": "Another app's idea"}
MAPPING = {"admin": ["Sensor.Admin"], "security_analyst": ["Sensor.SecurityAnalyst"],
           "read_only": ["Sensor.ReadOnly"]}
OPERATORS = "eeeeeeee-0000-4000-8000-00000000000e"  # a group assigned Sensor.ReadOnly


def user(name: str, app_roles: list[str] | None = None, groups: list[str] | None = None,
         **more: Any) -> DevUser:
    return DevUser(username=f"{name}@contoso.example", password=PASSWORD, given_name=name.title(),
                   family_name="Tester", upn=f"{name}@contoso.example", groups=groups or [],
                   app_roles=app_roles or [], **more)


def users() -> list[DevUser]:
    """Fresh users for each stack (the directory changes of a test mutate them)."""
    return [
        user("ada", ["Sensor.Admin"]),
        user("sam", ["Sensor.SecurityAnalyst"]),
        user("both", ["Sensor.ReadOnly", "Sensor.Admin"]),
        user("viagroup", groups=[OPERATORS]),
        # In the admin group but assigned no app role: groups do not count with app roles.
        user("grouponly", groups=ROLE_GROUPS["admin"]),
        user("other", ["Historian.Reader"]),
        user("overage", ["Sensor.SecurityAnalyst"],
             groups=[f"{i:08x}-0000-4000-8000-000000000000" for i in range(250)], overage=True),
        user("noclaims", ["Sensor.ReadOnly"], optional_claims=False),
    ]


def app_roles_config(data: dict[str, Any]) -> None:
    data["roles"] = {"source": "app_roles", **MAPPING}
    data["session"].update(revalidate_interval="10s", revalidate_grace="1m")


@pytest.fixture
async def astack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with ``source = "app_roles"``, app roles defined and assigned, 10 s
    re-validation."""
    s = await make_stack(tmp_path, users=users(), config=app_roles_config, idp_options={
        "app_roles": dict(APP_ROLES), "group_app_roles": {OPERATORS: ["Sensor.ReadOnly"]}})
    try:
        yield s
    finally:
        await s.close()


def graph_calls(stack: Stack) -> int:
    return sum(n for name, n in stack.idp.requests.items() if name.startswith("graph_"))


class TestSignIn:
    async def test_direct_assignment_gives_the_role(self, astack: Stack) -> None:
        """An app role assigned to the user decides the role; the audit names the value."""
        with capture_logs() as logs:
            browser = await signed_in(astack, "ada@contoso.example")
        assert "admin" == await role(browser)
        succeeded = events(logs, "sso_login_succeeded")
        assert [["Sensor.Admin"]] == [e["groups_matched"] for e in succeeded]
        me = await (await browser.get("/auth/me")).json()
        assert ["Sensor.Admin"] == me["groups"]

    async def test_highest_role_wins(self, astack: Stack) -> None:
        """Read only and Admin assigned: Admin."""
        assert "admin" == await role(await signed_in(astack, "both@contoso.example"))

    async def test_group_assignment_gives_the_role(self, astack: Stack) -> None:
        """An app role assigned to a group reaches its members through the roles claim."""
        assert "read_only" == await role(await signed_in(astack, "viagroup@contoso.example"))

    async def test_no_graph_call_for_roles(self, astack: Stack) -> None:
        """Even a user with a groups overage signs in without one Graph request."""
        browser = await signed_in(astack, "overage@contoso.example")
        assert "security_analyst" == await role(browser)
        assert 0 == graph_calls(astack)
        assert 1 == astack.idp.requests["token"]

    async def test_graph_still_reads_missing_names(self, astack: Stack) -> None:
        """Names missing from the token still come from Graph /me; roles never do."""
        browser = await signed_in(astack, "noclaims@contoso.example")
        assert "read_only" == await role(browser)
        assert 1 == astack.idp.requests["graph_me"]
        assert 0 == astack.idp.requests["graph_check_member_groups"]
        assert 0 == astack.idp.requests["graph_get_member_objects"]


class TestRefusal:
    @pytest.mark.parametrize("username", ["grouponly@contoso.example",
                                          "other@contoso.example"])
    async def test_no_mapped_app_role_is_refused(self, astack: Stack, username: str) -> None:
        """No roles claim, or only values not mapped: 403 no_app_role, a page that says to
        ask for an app role assignment, and no Graph call."""
        browser = astack.browser()
        with capture_logs() as logs:
            resp = await browser.sign_in(username)
        assert 403 == resp.status
        page = await resp.text()
        assert "none of the app roles" in page
        assert "assign you an app role" in page
        assert 401 == await check_status(browser)
        refused = events(logs, "sso_login_refused")
        assert [("no_app_role", username)] == [(e["reason"], e["upn"]) for e in refused]
        assert 0 == graph_calls(astack)

    async def test_assignment_required_stops_others_at_entra(self, astack: Stack) -> None:
        """"Assignment required" on: an unassigned user never gets a token (AADSTS50105)."""
        astack.idp.assignment_required = True
        resp = await astack.browser().sign_in("grouponly@contoso.example")
        assert 403 == resp.status
        assert "50105" in await resp.text()
        assert 0 == astack.idp.requests["token"]
        assert 302 == (await astack.browser().sign_in("ada@contoso.example")).status


class TestRevalidation:
    async def test_assignment_removed_ends_the_session(self, astack: Stack) -> None:
        """The app role assignment removed in Entra ID → 401 within one interval, reason
        no_app_role; no Graph call."""
        browser = await signed_in(astack, "sam@contoso.example")
        assign_app_roles(astack.idp, "sam@contoso.example", [])
        with capture_logs() as logs:
            await one_interval_later(astack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the unassigned user's session ends")
        assert ["no_app_role"] == [e["reason"] for e in events(logs, "session_revoked")]
        assert 0 == graph_calls(astack)

    async def test_group_assignment_removed_ends_the_session(self, astack: Stack) -> None:
        """The group's app role assignment removed → its member's session ends."""
        browser = await signed_in(astack, "viagroup@contoso.example")
        assign_group_app_roles(astack.idp, OPERATORS, [])
        await one_interval_later(astack)

        async def out() -> bool:
            return await check_status(browser) == 401

        await eventually(out, "the group member's session ends")

    async def test_role_changed(self, astack: Stack) -> None:
        """Another app role assigned → the new role on the next check, session_role_changed."""
        browser = await signed_in(astack, "sam@contoso.example")
        assign_app_roles(astack.idp, "sam@contoso.example", ["Sensor.Admin"])
        with capture_logs() as logs:
            await one_interval_later(astack)

            async def promoted() -> bool:
                return await role(browser) == "admin"

            await eventually(promoted, "the new app role reaches /auth/check")
        changed = events(logs, "session_role_changed")
        assert [("security_analyst", "admin", "revalidation")] == [
            (e["from"], e["to"], e["via"]) for e in changed]
