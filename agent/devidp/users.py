"""Directory users of the dev IdP and the demo population."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

DEMO_PASSWORD = "Passw0rd!"
"""Password of every demo user (loopback demo only)."""

_DEMO_NAMESPACE = uuid.UUID("6f1c7d1e-4c55-4d5b-9a51-5e2f3d7d0c11")


def _uuid4() -> str:
    return str(uuid.uuid4())


@dataclass
class DevUser:
    """A directory user. ``groups`` are object ids of the groups the user is (transitively) in.

    ``given_name``/``family_name``/``upn`` of ``None`` mean the attribute is empty in the
    directory: absent from the ID token and ``null`` in Graph. ``groups`` also count as
    direct memberships for the app roles assigned to groups (Entra does not pass those on to
    nested groups; the provider has none).
    """

    username: str
    password: str
    given_name: str | None
    family_name: str | None
    upn: str | None
    groups: list[str]
    oid: str = field(default_factory=_uuid4)
    mfa: bool = False
    optional_claims: bool = True
    overage: bool = False
    display_name: str = ""
    disabled: bool = False  # "Block sign-in" in Entra ID: refreshes answer AADSTS50057
    # A B2B guest: the home tenant's id. Its ID token names that tenant in ``idp``, carries
    # ``upn`` only with ``policies.include_externally_authenticated_upn``, and revoking its
    # sessions here leaves its refresh tokens alive (only the home tenant can revoke them).
    home_tenant: str | None = None
    # Values of the app roles assigned to the user directly (Enterprise applications > Users
    # and groups); a group's assignments are ProviderState.group_app_roles.
    app_roles: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Display name as Entra shows it (falls back to the given and family names)."""
        if self.display_name:
            return self.display_name
        return " ".join(p for p in (self.given_name, self.family_name) if p) or self.username


def _demo_user(
    username: str,
    given: str | None,
    family: str | None,
    groups: list[str],
    *,
    no_upn: bool = False,
    mfa: bool = False,
    optional_claims: bool = True,
    overage: bool = False,
    display_name: str = "",
    app_roles: list[str] | None = None,
) -> DevUser:
    return DevUser(
        username=username,
        password=DEMO_PASSWORD,
        given_name=given,
        family_name=family,
        upn=None if no_upn else username,
        groups=groups,
        oid=str(uuid.uuid5(_DEMO_NAMESPACE, username)),
        mfa=mfa,
        optional_claims=optional_claims,
        overage=overage,
        display_name=display_name,
        app_roles=list(app_roles or []),
    )


def demo_users(groups: dict[str, list[str]]) -> list[DevUser]:
    """One user for every role and every refusal; ``groups`` maps role id to group ids.

    Usernames are ``<who>@contoso.example``, every password is ``DEMO_PASSWORD`` and the
    object ids are stable (derived from the username). Roles without configured groups get a
    stable made-up group id.
    """

    def role(r: str) -> list[str]:
        return list(groups.get(r) or [str(uuid.uuid5(_DEMO_NAMESPACE, f"group:{r}"))])

    unmapped = str(uuid.uuid5(_DEMO_NAMESPACE, "group:unmapped"))
    many = [str(uuid.uuid5(_DEMO_NAMESPACE, f"group:bulk:{i}")) for i in range(249)]
    return [
        _demo_user("admin@contoso.example", "Adele", "Vance", role("admin")),
        _demo_user("analyst@contoso.example", "Alex", "Wilber", role("security_analyst")),
        _demo_user("reader@contoso.example", "Megan", "Bowen", role("read_only")),
        _demo_user("admin.reader@contoso.example", "Lee", "Gu", role("admin") + role("read_only")),
        _demo_user("nogroup@contoso.example", "Nestor", "Wilke", [unmapped]),
        _demo_user("nolastname@contoso.example", "Cher", None, role("read_only"),
                   display_name="Cher"),
        _demo_user("graphprofile@contoso.example", "Grady", "Archie", role("security_analyst"),
                   optional_claims=False),
        _demo_user("overage@contoso.example", "Olga", "Verlag",
                   many[:120] + role("read_only")[:1] + many[120:], overage=True),
        _demo_user("mfa@contoso.example", "Miriam", "Graham", role("security_analyst"),
                   mfa=True),
        _demo_user("noupn@contoso.example", "Uma", "Nupe", role("read_only"), no_upn=True),
        # In no mapped group; assigned an app role directly (Enterprise applications > Users
        # and groups): a role only where [roles] source = "app_roles" (when the provider
        # defines that app role).
        _demo_user("approle@contoso.example", "Avery", "Rolle", [unmapped],
                   app_roles=["Sensor.SecurityAnalyst"]),
    ]
