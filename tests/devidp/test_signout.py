"""The end-session endpoint (agent/devidp/signout.py)."""

from __future__ import annotations

import aiohttp

from agent.devidp import DevIdentityProvider
from tests.devidp.helpers import LOGIN_PAGE, auth_params, get, sign_in


class TestSignOut:
    async def test_registered_uri_is_followed_and_sso_ends(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """302 to a registered post_logout_redirect_uri; the next authorize shows the form."""
        await sign_in(idp, http)
        status, _, resp = await get(idp, http, f"{idp.end_session_endpoint}?"
                                    f"post_logout_redirect_uri={LOGIN_PAGE}")
        assert status == 302 and resp.headers["Location"] == LOGIN_PAGE
        params, _ = auth_params()
        assert (await get(idp, http, idp.authorize_url(**params)))[0] == 200

    async def test_state_is_passed_back(self, idp: DevIdentityProvider,
                                        http: aiohttp.ClientSession) -> None:
        """The state parameter goes back with the redirect."""
        _, _, resp = await get(idp, http, f"{idp.end_session_endpoint}?"
                               f"post_logout_redirect_uri={LOGIN_PAGE}&state=s-9")
        assert resp.headers["Location"] == f"{LOGIN_PAGE}?state=s-9"

    async def test_unregistered_uri_gets_a_page(self, idp: DevIdentityProvider,
                                                http: aiohttp.ClientSession) -> None:
        """An unregistered post_logout_redirect_uri is not followed: a 'You signed out' page."""
        status, page, resp = await get(idp, http, f"{idp.end_session_endpoint}?"
                                       "post_logout_redirect_uri=https://evil.example/")
        assert status == 200 and "You signed out" in page and "Location" not in resp.headers
