"""Guests (Entra B2B): refused unless [entra] allow_guests, shown readably, and offboarded
the way Entra ID allows (agent/signin/guests.py), through the local provider's guest users."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.devidp import DevUser, demo_users
from agent.devidp.refresh import revoke_sessions, set_groups
from agent.signin.guests import is_guest, readable_upn
from agent.web import keys
from tests.harness import PASSWORD, ROLE_GROUPS, TENANT, StackFactory, short_intervals
from tests.signin.test_revalidation import (
    check_status,
    confirmed_one_interval_later,
    events,
    eventually,
    one_interval_later,
    signed_in,
)

HOME = "11112222-3333-4444-5555-666677778888"
GUEST_UPN = "jo_fabrikam.example#EXT#@contoso.onmicrosoft.com"
NAMELESS_UPN = "kim_fabrikam.example#EXT#@contoso.onmicrosoft.com"


def users() -> list[DevUser]:
    """The demo users, a guest with names, and a guest without (as many are)."""
    return [*demo_users(ROLE_GROUPS),
            DevUser(username=GUEST_UPN, password=PASSWORD, given_name="Jo",
                    family_name="Fabrik", upn=GUEST_UPN, groups=ROLE_GROUPS["read_only"][:1],
                    home_tenant=HOME),
            DevUser(username=NAMELESS_UPN, password=PASSWORD, given_name=None,
                    family_name=None, upn=NAMELESS_UPN, groups=ROLE_GROUPS["read_only"][:1],
                    home_tenant=HOME)]


def allowing(data: dict[str, Any]) -> None:
    short_intervals(data)
    data["entra"]["allow_guests"] = True


class TestGuestsRefusedByDefault:
    @pytest.mark.parametrize("username", [GUEST_UPN, NAMELESS_UPN])
    async def test_a_guest_is_refused_with_a_clear_reason(self, new_stack: StackFactory,
                                                          username: str) -> None:
        """403 guest_not_allowed with the page's words, also for a guest without names
        (not missing_attributes); no session."""
        stack = await new_stack(users=users())
        with capture_logs() as logs:
            resp = await stack.browser().sign_in(username)
        assert 403 == resp.status
        assert "Guest accounts cannot sign in here" in await resp.text()
        assert ["guest_not_allowed"] == [e["reason"] for e in
                                         events(logs, "sso_login_refused")]
        assert stack.app is not None and [] == stack.app[keys.SESSIONS].live()

    async def test_members_are_not_guests(self, new_stack: StackFactory) -> None:
        """A member of the tenant signs in as before."""
        stack = await new_stack(users=users())
        assert 302 == (await stack.browser().sign_in("reader@contoso.example")).status


class TestGuestsAllowed:
    async def test_guest_signs_in_with_the_upn_from_graph_and_shown_readably(
            self, new_stack: StackFactory) -> None:
        """Without include_externally_authenticated_upn the token has no upn: Graph gives
        the #EXT# UPN, which the console's header carries and the page shows readably."""
        stack = await new_stack(users=users(), config=allowing)
        before = stack.idp.requests["graph_me"]
        browser = await signed_in(stack, GUEST_UPN)
        assert stack.idp.requests["graph_me"] > before
        check = await browser.get("/auth/check")
        assert GUEST_UPN == check.headers["X-Auth-Request-User"]
        overview = await (await browser.get("/")).text()
        assert "jo@fabrikam.example (guest)" in overview and "#EXT#" not in overview

    async def test_revoking_a_guest_in_this_tenant_does_not_end_the_session(
            self, new_stack: StackFactory) -> None:
        """Entra ID leaves a guest's refresh tokens alive when its sessions are revoked in the
        resource tenant: the session is confirmed again. Removing the guest from the sensor's
        groups is what ends it (no_role)."""
        stack = await new_stack(users=users(), config=allowing)
        browser = await signed_in(stack, GUEST_UPN)
        revoke_sessions(stack.idp, GUEST_UPN)
        assert stack.app is not None
        session = stack.app[keys.SESSIONS].live()[0]
        await confirmed_one_interval_later(stack, session)
        assert 200 == await check_status(browser)
        set_groups(stack.idp, GUEST_UPN, [])
        with capture_logs() as logs:
            await one_interval_later(stack)

            async def out() -> bool:
                return await check_status(browser) == 401

            await eventually(out, "the guest without a group loses the session")
        assert ["no_role"] == [e["reason"] for e in events(logs, "session_revoked")]


class TestRecognisingGuests:
    @pytest.mark.parametrize(("claims", "upn", "guest"), [
        ({"iss": "x", "idp": f"https://sts.windows.net/{HOME}/"}, None, True),
        ({"iss": "x", "idp": "live.com"}, None, True),
        ({"iss": "x", "idp": f"https://sts.windows.net/{TENANT}/"}, None, False),
        ({"iss": "x"}, "jo@contoso.example", False),
        ({"iss": "x"}, GUEST_UPN, True),
        ({"iss": "x", "upn": GUEST_UPN.lower()}, None, True),
    ])
    def test_by_idp_or_ext_upn(self, claims: dict[str, Any], upn: str | None,
                               guest: bool) -> None:
        """idp naming another tenant, or #EXT# in the UPN, makes a guest; idp naming the
        sensor's own tenant does not."""
        assert guest is is_guest(claims, TENANT, upn)

    @pytest.mark.parametrize(("upn", "shown"), [
        (GUEST_UPN, "jo@fabrikam.example (guest)"),
        ("first.last_sub.fabrikam.example#EXT#@t.onmicrosoft.com",
         "first.last@sub.fabrikam.example (guest)"),
        ("odd#EXT#@t.onmicrosoft.com", "odd (guest)"),
        ("jo@contoso.example", "jo@contoso.example"),
    ])
    def test_readable_upn(self, upn: str, shown: str) -> None:
        """The home address comes back from name_home#EXT#@tenant; members are unchanged."""
        assert shown == readable_upn(upn)
