"""The Microsoft Graph subset (agent/devidp/graph.py): /me, group checks, userinfo."""

from __future__ import annotations

import aiohttp

from agent.devidp import DevIdentityProvider
from tests.clock import Clock
from tests.devidp.helpers import GROUP_ADMIN, claims_of, get, tokens_for


async def bearer_of(idp: DevIdentityProvider, http: aiohttp.ClientSession, who: str = "bare"
                    ) -> dict[str, str]:
    access = (await tokens_for(idp, http, who))["access_token"]
    return {"Authorization": f"Bearer {access}"}


class TestMe:
    async def test_selected_attributes(self, idp: DevIdentityProvider,
                                       http: aiohttp.ClientSession) -> None:
        """$select returns exactly those attributes; an empty one is null."""
        me = f"{idp.graph_url}/v1.0/me?$select=givenName,surname,userPrincipalName"
        status, body, _ = await get(idp, http, me, headers=await bearer_of(idp, http))
        assert status == 200
        assert {k: v for k, v in body.items() if not k.startswith("@")} == {
            "givenName": "Adele", "surname": None, "userPrincipalName": "bare@contoso.example"}

    async def test_unknown_attribute(self, idp: DevIdentityProvider,
                                     http: aiohttp.ClientSession) -> None:
        """Selecting an attribute the user type lacks is a 400."""
        status, _, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me?$select=nope",
                                 headers=await bearer_of(idp, http))
        assert status == 400


class TestBearerToken:
    async def test_missing_token(self, idp: DevIdentityProvider,
                                 http: aiohttp.ClientSession) -> None:
        """No token: 401 InvalidAuthenticationToken with a Bearer challenge."""
        status, body, resp = await get(idp, http, f"{idp.graph_url}/v1.0/me")
        assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

    async def test_id_token_is_not_an_access_token(self, idp: DevIdentityProvider,
                                                   http: aiohttp.ClientSession) -> None:
        """An ID token (audience: the client) is refused by Graph."""
        id_token = (await tokens_for(idp, http))["id_token"]
        status, _, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me",
                                 headers={"Authorization": f"Bearer {id_token}"})
        assert status == 401

    async def test_expired_token(self, idp: DevIdentityProvider,
                                 http: aiohttp.ClientSession) -> None:
        """An access token past its lifetime by the provider's clock is refused."""
        bearer = await bearer_of(idp, http)
        assert isinstance(idp.clock, Clock)
        idp.clock.advance(3600)
        status, body, _ = await get(idp, http, f"{idp.graph_url}/v1.0/me", headers=bearer)
        assert status == 401 and "expired" in body["error"]["message"]


class TestCheckMemberGroups:
    async def test_answers_the_groups_the_user_is_in(self, idp: DevIdentityProvider,
                                                     http: aiohttp.ClientSession) -> None:
        """Of the ids asked about, the answer holds those the user is a member of."""
        async with http.post(f"{idp.graph_url}/v1.0/me/checkMemberGroups",
                             json={"groupIds": [GROUP_ADMIN, "x"]},
                             headers=await bearer_of(idp, http),
                             ssl=idp.client_ssl_context()) as resp:
            assert resp.status == 200 and (await resp.json())["value"] == [GROUP_ADMIN]

    async def test_at_most_twenty_ids(self, idp: DevIdentityProvider,
                                      http: aiohttp.ClientSession) -> None:
        """21 ids in one call is a 400, as Graph limits it."""
        async with http.post(f"{idp.graph_url}/v1.0/me/checkMemberGroups",
                             json={"groupIds": [str(i) for i in range(21)]},
                             headers=await bearer_of(idp, http),
                             ssl=idp.client_ssl_context()) as resp:
            assert resp.status == 400

    async def test_needs_a_token(self, idp: DevIdentityProvider,
                                 http: aiohttp.ClientSession) -> None:
        """Without a token the check is a 401, and every call is counted."""
        async with http.post(f"{idp.graph_url}/v1.0/me/checkMemberGroups",
                             json={"groupIds": [GROUP_ADMIN]},
                             ssl=idp.client_ssl_context()) as resp:
            assert resp.status == 401
        assert idp.requests["graph_check_member_groups"] == 1


class TestGetMemberObjects:
    async def test_overage_endpoint_lists_every_group(self, idp: DevIdentityProvider,
                                                      http: aiohttp.ClientSession) -> None:
        """The endpoint an overage token points at lists all 251 groups."""
        body = await tokens_for(idp, http, "overage")
        endpoint = claims_of(body["id_token"])["_claim_sources"]["src1"]["endpoint"]
        async with http.post(endpoint, json={"securityEnabledOnly": False},
                             headers={"Authorization": f"Bearer {body['access_token']}"},
                             ssl=idp.client_ssl_context()) as resp:
            assert resp.status == 200 and len((await resp.json())["value"]) == 251
