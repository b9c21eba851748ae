"""The signed-in identity's attributes and groups: from the ID token, else Microsoft Graph.

Shared by the sign-in (``signin.py``) and the re-validation of live sessions
(``revalidation.py``): first name, last name and UPN must be present (refused otherwise), the
groups come from the token unless it reports an overage or carries none, then from Graph's
``checkMemberGroups`` restricted to the groups the role mapping names. With ``[roles] source =
"app_roles"`` the values are the ID token's ``roles`` claim alone: Entra never cuts it short
(no overage), so Graph is never asked for roles. ``IdentityProvider`` bundles what both ask of
Entra ID: the tenant's metadata and keys, the MSAL client and Graph, with this sensor's
settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..entra.client import EntraClient
from ..entra.discovery import ProviderMetadata, TenantMetadata
from ..entra.graph import GraphClient, text_or_none
from ..entra.tokens import validate_id_token
from ..errors import IdentityProviderUnavailable, MissingAttributes, SignInRefused
from ..roles import configured_groups
from ..settings import Settings
from .guests import refuse_guest

_MAX_ATTRIBUTE = 256  # characters of a name or UPN (Entra's own limits: 64 and 113)
_MAX_APP_ROLES = 1024  # values of the roles claim looked at (only mapped ones are kept)
_ATTRIBUTE_NAMES = {"given_name": "First name", "family_name": "Last name",
                    "upn": "User principal name"}


@dataclass(frozen=True)
class IdentityProvider:
    """Entra ID as the sign-in and the re-validation see it (one per application)."""

    settings: Settings
    tenant: TenantMetadata
    client: EntraClient
    graph: GraphClient

    async def validate(self, id_token: object, metadata: ProviderMetadata, nonce_hash: str | None,
                       now: float) -> dict[str, Any]:
        """The ID token's claims once every check passed (``entra/tokens.py``)."""
        entra = self.settings.entra
        return await validate_id_token(
            id_token, key_for=self.tenant.signing_key, issuer=metadata.issuer,
            client_id=entra.client_id, tenant_id=entra.tenant_id, nonce_hash=nonce_hash,
            now=now, leeway=entra.clock_skew)

    def check_step_up(self, claims: Mapping[str, Any], now: float) -> None:
        """The requested auth context must be in ``acrs``; ``auth_time`` within ``max_age``."""
        entra = self.settings.entra
        if entra.require_auth_context and \
                entra.require_auth_context not in strings(claims.get("acrs")):
            raise SignInRefused(
                "auth_context_missing", "the sign-in did not satisfy the Conditional Access "
                f"authentication context {entra.require_auth_context}")
        if entra.max_age is not None:
            auth_time = claims.get("auth_time")
            if not isinstance(auth_time, int | float) or isinstance(auth_time, bool) or \
                    now - auth_time > entra.max_age + entra.clock_skew:
                raise SignInRefused("reauthentication_required", "the sign-in reused an "
                                    "Entra ID session older than max_age")

    async def identity(self, claims: Mapping[str, Any],
                       access_token: str | None) -> tuple[dict[str, str], list[str]]:
        """The user's required attributes (refused when any is missing, and a guest unless
        ``allow_guests``: ``guests.py``), and the groups or app role values the role is
        decided from (``[roles] source``)."""
        entra = self.settings.entra
        refuse_guest(claims, entra.tenant_id, entra.allow_guests)  # before missing names
        profile = await read_profile(claims, access_token, self.graph)
        refuse_guest(claims, entra.tenant_id, entra.allow_guests, profile["upn"])
        if self.settings.roles_source == "app_roles":
            return profile, read_app_roles(claims)
        groups = await read_groups(claims, access_token, self.graph, self.settings.roles)
        return profile, groups


async def read_profile(claims: Mapping[str, Any], access_token: str | None,
                       graph: GraphClient) -> dict[str, str]:
    """First name, last name and UPN from the ID token, else from Graph; refused if missing."""
    found = {name: text_or_none(claims.get(name)) for name in _ATTRIBUTE_NAMES}
    if None in found.values():
        me = await graph.profile(_graph_token(access_token))
        found["given_name"] = found["given_name"] or me.given_name
        found["family_name"] = found["family_name"] or me.family_name
        found["upn"] = found["upn"] or me.upn
    if len(found["upn"] or "") > _MAX_ATTRIBUTE:  # an identity is never cut short
        raise SignInRefused("attribute_too_long", "the account's User principal name is "
                            f"longer than {_MAX_ATTRIBUTE} characters")
    if found["upn"] and not _usable_upn(found["upn"]):  # it goes out in a header, as is
        raise SignInRefused("upn_unusable", "the account's User principal name holds a "
                            "control character or a space")
    for name in ("given_name", "family_name"):  # Entra allows 64; shown, never matched
        found[name] = (found[name] or "")[:_MAX_ATTRIBUTE] or None
    missing = [label for name, label in _ATTRIBUTE_NAMES.items() if not found[name]]
    if missing:
        raise MissingAttributes(missing, upn=found["upn"])
    return {k: v for k, v in found.items() if v is not None}


def _usable_upn(upn: str) -> bool:
    """No control character and no white space: Entra never issues either in a UPN, and the
    UPN reaches the console verbatim in ``X-Auth-Request-User``."""
    return upn.isprintable() and not any(c.isspace() for c in upn)


async def read_groups(claims: Mapping[str, Any], access_token: str | None, graph: GraphClient,
                      roles: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The token's groups; Graph ``checkMemberGroups`` on overage or when it carries none."""
    names = claims.get("_claim_names")
    overage = isinstance(names, dict) and "groups" in names
    groups = claims.get("groups")
    if not overage and isinstance(groups, list) and all(isinstance(g, str) for g in groups):
        return groups
    return await graph.member_groups(_graph_token(access_token), configured_groups(roles))


def read_app_roles(claims: Mapping[str, Any]) -> list[str]:
    """The ID token's ``roles`` claim: the values of the app roles assigned to the user
    (directly or through a group). Absent when none is; never an overage."""
    roles = claims.get("roles")
    if not isinstance(roles, list):
        return []
    return [r for r in roles[:_MAX_APP_ROLES] if isinstance(r, str)]


def _graph_token(access_token: str | None) -> str:
    """The access token for Graph; without one the sign-in cannot go on (fail closed)."""
    if access_token is None:
        raise IdentityProviderUnavailable(
            "graph_no_token", "Entra ID issued no token for Microsoft Graph",
            dependency="Microsoft Graph")
    return access_token


def strings(value: object) -> list[str]:
    """A claim that should be a list of strings (``amr``, ``acrs``): its strings, at most 16."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)][:16]
    return []
