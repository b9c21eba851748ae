"""App roles as Entra issues them: the ID token's ``roles`` claim holds the values of the app
roles assigned to the user, directly or through a group it is a direct member of; only roles
the app registration defines; absent when none; never an overage. "Assignment required"
refuses everyone else with AADSTS50105. The directory page assigns them."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import aiohttp

from agent.devidp import DevIdentityProvider, DevUser
from agent.devidp.refresh import assign_app_roles
from tests.devidp.helpers import GROUP_ADMIN, claims_of, sign_in, tokens_for

APP_ROLES = {"Sensor.Admin": "Sensor Admin", "Sensor.ReadOnly": "Read only"}


def define(idp: DevIdentityProvider) -> None:
    idp.app_roles = dict(APP_ROLES)


def user_of(idp: DevIdentityProvider, who: str) -> DevUser:
    found = idp.user_by_username(who)
    assert found is not None
    return found


class TestRolesClaim:
    async def test_direct_assignment(self, idp: DevIdentityProvider,
                                     http: aiohttp.ClientSession) -> None:
        """A user assigned an app role gets its value in the ID token's roles claim."""
        define(idp)
        assign_app_roles(idp, "adele@contoso.example", ["Sensor.ReadOnly"])
        claims = claims_of((await tokens_for(idp, http))["id_token"])
        assert ["Sensor.ReadOnly"] == claims["roles"]

    async def test_no_assignment_no_claim(self, idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
        """Without an assigned app role the claim is absent (not an empty list)."""
        define(idp)
        assert "roles" not in claims_of((await tokens_for(idp, http))["id_token"])

    async def test_group_assignment_reaches_members(self, idp: DevIdentityProvider,
                                                    http: aiohttp.ClientSession) -> None:
        """An app role assigned to a group is in its members' tokens, once, in the
        manifest's order, even without optional claims and with a groups overage."""
        define(idp)
        idp.group_app_roles[GROUP_ADMIN] = ["Sensor.Admin"]
        assign_app_roles(idp, "many@contoso.example", ["Sensor.ReadOnly", "Sensor.Admin"])
        many = claims_of((await tokens_for(idp, http, "overage"))["id_token"])
        assert ["Sensor.Admin", "Sensor.ReadOnly"] == many["roles"]
        assert "groups" not in many  # the groups overage leaves the roles claim alone
        bare = claims_of((await tokens_for(idp, http, "bare"))["id_token"])
        assert ["Sensor.Admin"] == bare["roles"]  # not an optional claim
        idp.group_app_roles = {"dddddddd-0000-4000-8000-00000000000d": ["Sensor.Admin"]}
        plain = claims_of((await tokens_for(idp, http))["id_token"])
        assert "roles" not in plain  # not a member of that group

    async def test_only_defined_roles(self, idp: DevIdentityProvider,
                                      http: aiohttp.ClientSession) -> None:
        """An assignment to a value the registration no longer defines is not emitted, and
        assigning an undefined value is refused."""
        define(idp)
        assign_app_roles(idp, "adele@contoso.example", ["Sensor.Admin"])
        del idp.app_roles["Sensor.Admin"]
        assert "roles" not in claims_of((await tokens_for(idp, http))["id_token"])
        try:
            assign_app_roles(idp, "adele@contoso.example", ["Nope"])
        except KeyError as exc:
            assert "Nope" in str(exc)
        else:
            raise AssertionError("an undefined app role was assigned")

    async def test_assignment_required(self, idp: DevIdentityProvider,
                                       http: aiohttp.ClientSession) -> None:
        """Assignment required: an unassigned user gets access_denied with AADSTS50105
        instead of a code; an assigned one signs in."""
        define(idp)
        idp.assignment_required = True
        answer, _ = await sign_in(idp, http)
        assert "access_denied" == answer["error"]
        assert answer["error_description"].startswith("AADSTS50105:")
        assert "code" not in answer
        assign_app_roles(idp, "adele@contoso.example", ["Sensor.Admin"])
        answer, _ = await sign_in(idp, http, prompt="login")
        assert "code" in answer


class TestDirectoryPage:
    async def test_assign_and_remove_an_app_role(self, idp: DevIdentityProvider,
                                                 http: aiohttp.ClientSession) -> None:
        """The directory page lists app roles and assigns one to a user, or none."""
        define(idp)
        ssl = idp.client_ssl_context()
        async with http.get(f"{idp.url}/directory", ssl=ssl) as resp:
            page = await resp.text()
        assert "Sensor.ReadOnly" in page
        token = re.search(r'name="token" value="([^"]+)"', page)
        assert token is not None
        form = {"token": token.group(1), "action": "assign_app_role",
                "username": "adele@contoso.example", "app_role": "Sensor.ReadOnly"}
        async with http.post(f"{idp.url}/directory", data=form, ssl=ssl,
                             allow_redirects=False) as resp:
            assert 303 == resp.status
            done = parse_qs(urlsplit(resp.headers["Location"]).query)["done"][0]
        assert "adele@contoso.example: app role Sensor.ReadOnly assigned directly" == done
        adele = user_of(idp, "adele@contoso.example")
        assert ["Sensor.ReadOnly"] == idp.assigned_app_roles(adele)
        async with http.get(f"{idp.url}/directory", ssl=ssl) as resp:
            assert "Sensor.ReadOnly (direct)" in await resp.text()
        form["app_role"] = ""
        async with http.post(f"{idp.url}/directory", data=form, ssl=ssl,
                             allow_redirects=False) as resp:
            assert 303 == resp.status
        assert [] == idp.assigned_app_roles(adele)
        form["app_role"] = "Nope"
        async with http.post(f"{idp.url}/directory", data=form, ssl=ssl,
                             allow_redirects=False) as resp:
            assert 400 == resp.status
