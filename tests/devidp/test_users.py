"""The demo population (agent/devidp/users.py)."""

from __future__ import annotations

from agent.devidp import DEMO_PASSWORD, demo_users

GROUPS = {"admin": ["a1"], "security_analyst": ["s1"], "read_only": ["r1", "r2"]}


class TestDemoUsers:
    def test_one_user_per_role(self) -> None:
        """admin, analyst and reader are in their role's groups; admin.reader in two roles."""
        users = {u.username: u for u in demo_users(GROUPS)}
        assert users["admin@contoso.example"].groups == ["a1"]
        assert users["analyst@contoso.example"].groups == ["s1"]
        assert users["reader@contoso.example"].groups == ["r1", "r2"]
        assert {"a1", "r1"} <= set(users["admin.reader@contoso.example"].groups)

    def test_one_user_per_refusal_and_edge(self) -> None:
        """No mapped group, no last name, profile only from Graph, overage, MFA, no UPN."""
        users = {u.username: u for u in demo_users(GROUPS)}
        assert not {"a1", "s1", "r1", "r2"} & set(users["nogroup@contoso.example"].groups)
        assert users["nolastname@contoso.example"].family_name is None
        assert users["graphprofile@contoso.example"].optional_claims is False
        overage = users["overage@contoso.example"]
        assert overage.overage and len(overage.groups) == 250 and "r1" in overage.groups
        assert users["mfa@contoso.example"].mfa and users["mfa@contoso.example"].groups == ["s1"]
        assert users["noupn@contoso.example"].upn is None

    def test_same_password_and_stable_ids(self) -> None:
        """Every password is DEMO_PASSWORD; object ids do not change between calls."""
        first, second = demo_users(GROUPS), demo_users(GROUPS)
        assert all(u.password == DEMO_PASSWORD for u in first)
        assert [u.oid for u in first] == [u.oid for u in second]
