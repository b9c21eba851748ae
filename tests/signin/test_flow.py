"""The sign-in end to end over real HTTP: agent ↔ local Entra-like provider (TLS) ↔ browser."""

from __future__ import annotations

import warnings

import pytest
from structlog.testing import capture_logs

from agent.devidp import DELETE, DevUser, Fault
from agent.sessions.store import COOKIE_NAME
from agent.web import keys
from tests.harness import PASSWORD, ROLE_GROUPS, Browser, Stack, StackFactory

BINDING = "__Host-sso_signin"


async def check(stack: Stack, browser: Browser,
                role: str | None = None) -> tuple[int, dict[str, str]]:
    params = {"role": role} if role else None
    resp = await browser.get("/auth/check", params=params)
    return resp.status, dict(resp.headers)


class TestSuccessfulSignIn:
    async def test_admin_lands_on_overview_with_a_session(self, stack: Stack) -> None:
        """Admin signs in: 302 to the Overview, opaque __Host- session cookie, binding cleared."""
        browser = stack.browser()
        resp = await browser.sign_in("admin@contoso.example")
        assert 302 == resp.status
        assert "/" == resp.headers["Location"]
        cookies = resp.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookies if c.startswith(COOKIE_NAME + "="))
        for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert attribute.lower() in session_cookie.lower()
        assert any(c.startswith(BINDING + '=""') or c.startswith(BINDING + "=;")
                   for c in cookies)
        status, headers = await check(stack, browser)
        assert 200 == status
        assert "admin@contoso.example" == headers["X-Auth-Request-User"]
        assert "admin" == headers["X-Auth-Request-Role"]

    async def test_me_describes_the_session(self, stack: Stack) -> None:
        """/auth/me returns the profile, role, matched groups and a CSRF token."""
        browser = stack.browser()
        await browser.sign_in("analyst@contoso.example")
        resp = await browser.get("/auth/me")
        me = await resp.json()
        assert 200 == resp.status
        assert ("security_analyst", "Security analyst") == (me["role"], me["role_name"])
        assert ROLE_GROUPS["security_analyst"] == me["groups"]
        assert me["given_name"] and me["family_name"] and me["csrf_token"]
        assert me["expires_at"] > stack.clock()

    async def test_next_path_is_honoured(self, stack: Stack) -> None:
        """The user lands on the page they asked for."""
        resp = await stack.browser().sign_in("reader@contoso.example", next_path="/devices?x=1")
        assert "/devices?x=1" == resp.headers["Location"]

    @pytest.mark.parametrize("hostile", ["//evil.example/", "https://evil.example/",
                                         "/\\evil.example", "/%2F%2Fevil.example"])
    async def test_hostile_next_lands_on_overview(self, stack: Stack, hostile: str) -> None:
        """A next that could leave the site is replaced by post_login_path."""
        resp = await stack.browser().sign_in("reader@contoso.example", next_path=hostile)
        assert "/" == resp.headers["Location"]

    async def test_user_in_two_roles_gets_the_most_privileged(self, stack: Stack) -> None:
        """A member of admin and read-only groups is Admin."""
        browser = stack.browser()
        await browser.sign_in("admin.reader@contoso.example")
        assert "admin" == (await check(stack, browser))[1]["X-Auth-Request-Role"]

    async def test_profile_from_graph_when_token_lacks_optional_claims(self, stack: Stack) -> None:
        """Without given_name/family_name/upn/groups claims, Graph supplies them."""
        browser = stack.browser()
        resp = await browser.sign_in("graphprofile@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert stack.idp.requests["graph_me"] >= 1
        assert stack.idp.requests["graph_check_member_groups"] >= 1
        status, headers = await check(stack, browser)
        assert (200, "graphprofile@contoso.example") == (status, headers["X-Auth-Request-User"])

    async def test_overage_user_groups_from_check_member_groups(self, stack: Stack) -> None:
        """Group overage: the role comes from Graph checkMemberGroups."""
        browser = stack.browser()
        resp = await browser.sign_in("overage@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert stack.idp.requests["graph_check_member_groups"] >= 1
        assert "read_only" == (await check(stack, browser))[1]["X-Auth-Request-Role"]

    async def test_mfa_user_approves_and_lands(self, stack: Stack) -> None:
        """MFA is Entra's: the user approves at the provider, the agent just signs them in."""
        browser = stack.browser()
        resp = await browser.sign_in("mfa@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert 200 == (await check(stack, browser))[0]

    async def test_new_session_id_at_every_sign_in(self, stack: Stack) -> None:
        """Signing in again issues a new id and kills the old one (no fixation)."""
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        first = browser.cookie(COOKIE_NAME)
        await browser.sign_in("admin@contoso.example")
        second = browser.cookie(COOKIE_NAME)
        assert first and second and first != second
        other = stack.browser()
        other.http.cookie_jar.update_cookies({COOKIE_NAME: first}, response_url=browser_url(stack))
        assert 401 == (await check(stack, other))[0]


def browser_url(stack: Stack):  # type: ignore[no-untyped-def]
    from yarl import URL

    return URL(stack.url)


class TestRolesAndGroups:
    @pytest.mark.parametrize(("username", "role"), [
        ("admin@contoso.example", "admin"),
        ("analyst@contoso.example", "security_analyst"),
        ("reader@contoso.example", "read_only"),
    ])
    async def test_every_role(self, stack: Stack, username: str, role: str) -> None:
        """Each role's group member gets that role in /auth/check."""
        browser = stack.browser()
        await browser.sign_in(username)
        assert (200, role) == ((s := await check(stack, browser))[0],
                               s[1]["X-Auth-Request-Role"])

    async def test_second_group_of_a_role(self, new_stack: StackFactory) -> None:
        """A role may list several groups: membership in any of them grants it."""
        user = DevUser(username="second@contoso.example", password=PASSWORD, given_name="Sam",
                       family_name="Second", upn="second@contoso.example",
                       groups=[ROLE_GROUPS["read_only"][1]])
        stack = await new_stack(users=[user])
        browser = stack.browser()
        await browser.sign_in("second@contoso.example")
        assert "read_only" == (await check(stack, browser))[1]["X-Auth-Request-Role"]

    async def test_overage_with_more_than_20_configured_groups(
            self, new_stack: StackFactory) -> None:
        """Overage with 25 configured groups: checkMemberGroups is asked in chunks of 20."""
        many = [f"dddddddd-0000-4000-8000-{i:012d}" for i in range(25)]

        def config(data: dict) -> None:  # type: ignore[type-arg]
            data["roles"]["read_only"] = many

        user = DevUser(username="big@contoso.example", password=PASSWORD, given_name="Bea",
                       family_name="Big", upn="big@contoso.example",
                       groups=[many[24]] + [f"eeeeeeee-0000-4000-8000-{i:012d}"
                                            for i in range(250)], overage=True)
        stack = await new_stack(users=[user], config=config)
        browser = stack.browser()
        resp = await browser.sign_in("big@contoso.example")
        assert 302 == resp.status, await resp.text()
        assert 2 == stack.idp.requests["graph_check_member_groups"]
        assert "read_only" == (await check(stack, browser))[1]["X-Auth-Request-Role"]


class TestTokenRequest:
    async def test_origin_and_pkce_verifier_sent(self, stack: Stack) -> None:
        """The code is redeemed with the redirect URI's Origin and the matching PKCE verifier."""
        await stack.browser().sign_in("admin@contoso.example")
        assert stack.url == stack.idp.last_token_origin
        assert stack.idp.last_token_pkce_ok is True


class TestMissingAttributes:
    @pytest.mark.parametrize(("given", "family", "upn", "named"), [
        (None, "Silva", "x@contoso.example", "First name"),
        ("Ana", None, "x@contoso.example", "Last name"),
        ("Ana", "Silva", None, "User principal name"),
        (None, None, None, "First name, Last name, User principal name"),
    ])
    async def test_each_missing_attribute_named(self, new_stack: StackFactory, given: str | None,
                                                family: str | None, upn: str | None,
                                                named: str) -> None:
        """A user missing first name, last name or UPN is refused with a page naming it."""
        user = DevUser(username="x@contoso.example", password=PASSWORD, given_name=given,
                       family_name=family, upn=upn, groups=ROLE_GROUPS["admin"])
        stack = await new_stack(users=[user])
        browser = stack.browser()
        with capture_logs() as logs:
            resp = await browser.sign_in("x@contoso.example")
        assert 403 == resp.status
        assert f"lacks: {named}." in await resp.text()
        assert ["missing_attributes"] == [e["reason"] for e in logs
                                          if e["event"] == "sso_login_refused"]
        assert browser.cookie(COOKIE_NAME) is None


class TestNames:
    async def test_non_ascii_name_reaches_the_console_as_utf8(
            self, new_stack: StackFactory) -> None:
        """X-Auth-Request-Name carries a name like "José Müller" intact, as UTF-8."""
        user = DevUser(username="jose@contoso.example", password=PASSWORD, given_name="José",
                       family_name="Müller", upn="jose@contoso.example",
                       groups=ROLE_GROUPS["read_only"])
        stack = await new_stack(users=[user])
        browser = stack.browser()
        await browser.sign_in("jose@contoso.example")
        resp = await browser.get("/auth/check")
        raw = dict(resp.raw_headers)[b"X-Auth-Request-Name"]
        assert "José Müller" == raw.decode("utf-8")


class TestRefusals:
    async def test_no_mapped_group_is_refused(self, stack: Stack) -> None:
        """A user in no mapped group gets a 403 page saying whom to ask; no session."""
        browser = stack.browser()
        with capture_logs() as logs:
            resp = await browser.sign_in("nogroup@contoso.example")
        assert 403 == resp.status
        assert "No access to this sensor" in await resp.text()
        assert browser.cookie(COOKIE_NAME) is None
        refused = [e for e in logs if e["event"] == "sso_login_refused"]
        assert ["no_role"] == [e["reason"] for e in refused]

    async def test_missing_last_name_is_named(self, stack: Stack) -> None:
        """A user without a last name sees a 403 page naming the missing attribute."""
        resp = await stack.browser().sign_in("nolastname@contoso.example")
        text = await resp.text()
        assert 403 == resp.status
        assert "Last name" in text and "First name," not in text.split("lacks:")[1][:20]

    async def test_provider_error_shows_aadsts_code(self, stack: Stack) -> None:
        """error=access_denied with AADSTS50105 → 403 page with the code and what to do."""
        stack.idp.authorize_error = ("access_denied", "AADSTS50105: The signed in user is not "
                                     "assigned to a role for the application.")
        resp = await stack.browser().sign_in("admin@contoso.example")
        text = await resp.text()
        assert 403 == resp.status
        assert "AADSTS50105" in text and "not assigned" in text

    async def test_check_without_session(self, stack: Stack) -> None:
        """/auth/check without a session is 401, and /auth/me too."""
        browser = stack.browser()
        assert 401 == (await check(stack, browser))[0]
        assert 401 == (await browser.get("/auth/me")).status

    async def test_role_requirement(self, stack: Stack) -> None:
        """role= below the user's rank → 403; at or above → 200; unknown role → 400."""
        browser = stack.browser()
        await browser.sign_in("reader@contoso.example")
        assert 403 == (await check(stack, browser, "admin"))[0]
        assert 200 == (await check(stack, browser, "read_only"))[0]
        assert 400 == (await check(stack, browser, "superuser"))[0]


class TestSessionLifetime:
    async def test_idle_timeout(self, stack: Stack) -> None:
        """No request for longer than idle_timeout ends the session."""
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        stack.clock.advance(29 * 60)
        assert 200 == (await check(stack, browser))[0]
        stack.clock.advance(29 * 60)  # refreshed by the check above
        assert 200 == (await check(stack, browser))[0]
        stack.clock.advance(31 * 60)
        with capture_logs() as logs:
            assert 401 == (await check(stack, browser))[0]
        assert ["idle_timeout"] == [e["reason"] for e in logs if e["event"] == "session_expired"]

    async def test_absolute_timeout(self, stack: Stack) -> None:
        """A session in use every 29 minutes lives until absolute_timeout, then ends there."""
        absolute = stack.settings.session.absolute_timeout
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        signed_in = stack.clock()
        statuses = []
        assert stack.app is not None
        while stack.clock() - signed_in + 29 * 60 < absolute:
            stack.clock.advance(29 * 60)
            statuses.append((await check(stack, browser))[0])
            # What the background re-validation does while the clock runs on its own.
            await stack.app[keys.REVALIDATOR].revalidate_now()
        assert [200] * len(statuses) == statuses and len(statuses) > 20
        stack.clock.advance(absolute - (stack.clock() - signed_in))
        with capture_logs() as logs:
            assert 401 == (await check(stack, browser))[0]
        assert ["absolute_timeout"] == [
            e["reason"] for e in logs if e["event"] == "session_expired"]

    async def test_logout_needs_csrf_token(self, stack: Stack) -> None:
        """Without the CSRF token sign-out is 403 and the session lives on."""
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        resp = await browser.post("/auth/logout", data={"csrf_token": "wrong"})
        assert 403 == resp.status
        assert 200 == (await check(stack, browser))[0]

    async def test_logout_ends_the_session(self, stack: Stack) -> None:
        """With the CSRF token: 303 to the sign-in page, and the old cookie no longer works."""
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        old = browser.cookie(COOKIE_NAME)
        csrf = (await (await browser.get("/auth/me")).json())["csrf_token"]
        with capture_logs() as logs:
            resp = await browser.post("/auth/logout", headers={"X-CSRF-Token": csrf})
        assert 303 == resp.status and resp.headers["Location"].startswith("/login")
        assert any(e["event"] == "sso_logout" for e in logs)
        replay = stack.browser()
        assert old is not None
        replay.http.cookie_jar.update_cookies({COOKIE_NAME: old}, response_url=browser_url(stack))
        assert 401 == (await check(stack, replay))[0]

    async def test_sessions_survive_a_restart(self, stack: Stack) -> None:
        """Sessions persist in state_dir: after a restart the cookie still works."""
        browser = stack.browser()
        await browser.sign_in("admin@contoso.example")
        await stack.stop_agent()
        await stack.start_agent()
        status, headers = await check(stack, browser)
        assert (200, "admin") == (status, headers["X-Auth-Request-Role"])


class TestMsalTraps:
    async def test_one_token_endpoint_5xx_does_not_lock_out_the_next_user(
            self, stack: Stack) -> None:
        """MSAL's throttle would refuse every redemption for 60 s after one 5xx; not here."""
        stack.idp.faults["token"] = Fault(status=503, body=b'{"error":"temporarily_unavailable"}',
                                          times=1)
        first = await stack.browser().sign_in("admin@contoso.example")
        assert 502 == first.status
        second = await stack.browser().sign_in("reader@contoso.example")
        assert 302 == second.status, await second.text()

    async def test_no_tokens_kept_after_sign_in(self, stack: Stack) -> None:
        """MSAL's token cache holds nothing after sign-ins."""
        await stack.browser().sign_in("admin@contoso.example")
        await stack.browser().sign_in("reader@contoso.example")
        assert stack.app is not None
        msal_app = stack.app[keys.SIGN_IN].idp.client.app()
        assert [] == msal_app.get_accounts()

    async def test_token_without_sub_is_rejected_cleanly(self, stack: Stack) -> None:
        """An ID token without sub (KeyError inside MSAL) is a 400 page, not a 500."""
        stack.idp.token_tweaks.claims = {"sub": DELETE}
        resp = await stack.browser().sign_in("admin@contoso.example")
        assert 400 == resp.status
        assert "Sign-in response rejected" in await resp.text()

    async def test_form_post_warning_silenced(self, stack: Stack) -> None:
        """Starting a sign-in with the query response mode emits no warning."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await stack.browser().start()
        assert [] == [str(w.message) for w in caught]


class TestAudit:
    async def test_sign_in_events(self, stack: Stack) -> None:
        """sso_login_started and sso_login_succeeded carry upn, oid, role, groups, source ip."""
        with capture_logs() as logs:
            await stack.browser().sign_in("admin@contoso.example")
        events = [e["event"] for e in logs]
        assert "sso_login_started" in events and "sso_login_succeeded" in events
        ok = next(e for e in logs if e["event"] == "sso_login_succeeded")
        assert ("admin@contoso.example", "admin", "127.0.0.1") == (
            ok["upn"], ok["role"], ok["source_ip"])
        assert ok["oid"] and ROLE_GROUPS["admin"] == ok["groups_matched"]
