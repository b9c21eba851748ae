"""The authorization endpoint, the sign-in and MFA pages, SSO and the redirect back
(agent/devidp/authorize.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from agent.devidp import DevIdentityProvider, Fault
from tests.devidp.helpers import PASSWORD, REDIRECT, TENANT, auth_params, get, sign_in
from tests.devidp_driver import SignInDriverError, complete_sign_in, parse_page


class TestAuthorizeRequest:
    async def test_unregistered_redirect_uri_is_an_error_page(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """A redirect URI not registered gets AADSTS50011 on a page, never a redirect."""
        params, _ = auth_params(redirect_uri="https://evil.example/cb")
        status, page, resp = await get(idp, http, idp.authorize_url(**params))
        assert status == 400 and "Location" not in resp.headers
        assert parse_page(page).texts["error-code"] == "AADSTS50011"

    async def test_unknown_client_is_an_error_page(self, idp: DevIdentityProvider,
                                                   http: aiohttp.ClientSession) -> None:
        """An unknown client id gets AADSTS700016 on a page."""
        params, _ = auth_params()
        status, page, _ = await get(idp, http, idp.authorize_url(**{**params, "client_id": "x"}))
        assert status == 400 and parse_page(page).texts["error-code"] == "AADSTS700016"

    async def test_another_tenant_is_an_error_page(self, idp: DevIdentityProvider,
                                                   http: aiohttp.ClientSession) -> None:
        """Another tenant in the path gets AADSTS90002 on a page."""
        params, _ = auth_params()
        status, page, _ = await get(idp, http, idp.authorize_url(**params).replace(TENANT, "x"))
        assert status == 400 and parse_page(page).texts["error-code"] == "AADSTS90002"

    async def test_spa_requires_s256_pkce(self, idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
        """An SPA request without a code challenge goes back with AADSTS9002325 and the state."""
        params, _ = auth_params()
        del params["code_challenge"]
        status, _, resp = await get(idp, http, idp.authorize_url(**params))
        query = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
        assert status == 302 and query["error"] == "invalid_request" and query["state"] == "st-1"
        assert query["error_description"].startswith("AADSTS9002325")


class TestSignInPage:
    async def test_accessible_and_escapes(self, idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
        """Labelled fields, no script, and a login_hint shown escaped in the username field."""
        params, _ = auth_params(login_hint='"><script>alert(1)</script>')
        status, page, resp = await get(idp, http, idp.authorize_url(**params))
        assert status == 200 and "<script" not in page.lower()
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        form = parse_page(page).forms[0]
        assert form.id == "signin-form" and form.action == f"/{TENANT}/login"
        assert form.fields["username"] == '"><script>alert(1)</script>'
        for field in ("username", "password"):
            assert f'<label for="{field}">' in page and f'id="{field}"' in page

    async def test_wrong_password_shows_the_form_again(
            self, idp: DevIdentityProvider, http: aiohttp.ClientSession) -> None:
        """A wrong password: Entra's message and the form with the username kept."""
        params, _ = auth_params()
        with pytest.raises(SignInDriverError, match="account or password is incorrect") as info:
            await complete_sign_in(http, idp.authorize_url(**params), "adele@contoso.example",
                                   "wrong", idp.client_ssl_context())
        assert parse_page(info.value.page).forms[0].fields["username"] == "adele@contoso.example"


class TestMfa:
    async def test_number_matching_page(self, idp: DevIdentityProvider,
                                        http: aiohttp.ClientSession) -> None:
        """An MFA user's right password leads to a labelled two-digit number to approve."""
        params, _ = auth_params()
        _, page, _ = await get(idp, http, idp.authorize_url(**params))
        form = parse_page(page).forms[0]
        async with http.post(f"{idp.url}{form.action}", ssl=idp.client_ssl_context(),
                             data={**form.fields, "username": "mfa@contoso.example",
                                   "password": PASSWORD}) as resp:
            mfa_page = await resp.text()
        number = parse_page(mfa_page).texts["mfa-number"].strip()
        assert "Approve sign-in request" in mfa_page
        assert number.isdigit() and len(number) == 2
        assert '<label for="number">' in mfa_page

    async def test_wrong_number_is_denied(self, idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
        """A wrong number ends in a 400 'Request denied' page (AADSTS500121)."""
        params, _ = auth_params()
        with pytest.raises(SignInDriverError, match="AADSTS500121") as info:
            await complete_sign_in(http, idp.authorize_url(**params), "mfa@contoso.example",
                                   PASSWORD, idp.client_ssl_context(), mfa_number="100")
        assert info.value.status == 400

    async def test_right_number_completes(self, idp: DevIdentityProvider,
                                          http: aiohttp.ClientSession) -> None:
        """The number shown completes the sign-in with a code."""
        query, _ = await sign_in(idp, http, "mfa")
        assert "code" in query


class TestSso:
    async def test_cookie_signs_in_without_the_form(self, idp: DevIdentityProvider,
                                                    http: aiohttp.ClientSession) -> None:
        """After one sign-in the SSO cookie answers the next request with a code."""
        await sign_in(idp, http)
        params, _ = auth_params()
        status, _, resp = await get(idp, http, idp.authorize_url(**params))
        assert status == 302 and "code=" in resp.headers["Location"]

    async def test_prompt_login_shows_the_form(self, idp: DevIdentityProvider,
                                               http: aiohttp.ClientSession) -> None:
        """prompt=login asks for the password despite the SSO cookie."""
        await sign_in(idp, http)
        params, _ = auth_params(prompt="login")
        assert (await get(idp, http, idp.authorize_url(**params)))[0] == 200

    async def test_prompt_none_without_session(self, idp: DevIdentityProvider,
                                               http: aiohttp.ClientSession) -> None:
        """prompt=none with nobody signed in goes back with login_required."""
        params, _ = auth_params(prompt="none")
        _, _, resp = await get(idp, http, idp.authorize_url(**params))
        assert "error=login_required" in resp.headers["Location"]


class TestRedirectBack:
    async def test_response_modes(self, idp: DevIdentityProvider,
                                  http: aiohttp.ClientSession) -> None:
        """fragment puts the code after #; form_post answers a self-posting form."""
        await sign_in(idp, http)
        params, _ = auth_params(response_mode="fragment")
        _, _, resp = await get(idp, http, idp.authorize_url(**params))
        assert resp.headers["Location"].startswith(REDIRECT + "#code=")
        params["response_mode"] = "form_post"
        status, page, _ = await get(idp, http, idp.authorize_url(**params))
        form = parse_page(page).forms[0]
        assert status == 200 and form.action == REDIRECT and form.fields["state"] == "st-1"

    async def test_authorize_error(self, idp: DevIdentityProvider,
                                   http: aiohttp.ClientSession) -> None:
        """authorize_error sends the client that error after the sign-in, with the state."""
        idp.authorize_error = ("access_denied", "AADSTS50105: Your administrator has "
                               "configured the application to block users unless they are "
                               "specifically granted access.")
        query, _ = await sign_in(idp, http)
        assert query["error"] == "access_denied" and query["state"] == "st-1"
        assert query["error_description"].startswith("AADSTS50105")

    async def test_iss_parameter(self, idp: DevIdentityProvider,
                                 http: aiohttp.ClientSession) -> None:
        """With iss_parameter_supported the response names the issuer; iss_override lies."""
        idp.iss_parameter_supported = True
        query, _ = await sign_in(idp, http)
        assert query["iss"] == idp.issuer and "code" in query
        idp.iss_override = "https://evil.example/tenant/v2.0"
        query, _ = await sign_in(idp, http)
        assert query["iss"] == "https://evil.example/tenant/v2.0"

    async def test_fault_on_the_redirect_back(self, idp: DevIdentityProvider,
                                              http: aiohttp.ClientSession) -> None:
        """A fault on authorize_response replaces the final redirect."""
        await sign_in(idp, http)
        idp.faults["authorize_response"] = Fault(status=500, content_type="text/html", times=1)
        params, _ = auth_params()
        assert (await get(idp, http, idp.authorize_url(**params)))[0] == 500
