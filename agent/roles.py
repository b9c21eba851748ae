"""Entra group membership or app roles → sensor role. Pure: no I/O.

A user in the groups (or with the app roles) of several roles gets the most privileged one; a
user in none gets no role and is refused by the caller.

The role comes from one of two sources (``[roles] source``): ``"groups"``, Entra group object
ids (GUIDs, compared case-insensitively), or ``"app_roles"``, the *values* of the app
registration's app roles as the ID token's ``roles`` claim carries them (compared exactly, as
Entra asks: "the value should exactly match the string referenced in the application's
code"). An app role value is never a GUID here (the settings refuse one: it would be the app
role's id, which no token carries), so the values a session keeps say which source decided
its role (``source_of``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SOURCES = ("groups", "app_roles")
# Entra's rule for an app role's value (Graph appRole.value): at most 120 characters of
# A-Z a-z 0-9 and ! # $ % & ' ( ) * + , - . / : ; < = > ? @ [ ] ^ _ ` { | } ~; no space;
# not starting with a dot.
_APP_ROLE_VALUE = re.compile(r"[A-Za-z0-9!#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~]{1,120}")


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    rank: int


ROLES: dict[str, Role] = {
    "admin": Role("admin", "Admin", 3),
    "security_analyst": Role("security_analyst", "Security analyst", 2),
    "read_only": Role("read_only", "Read only", 1),
}


def role_name(role_id: str) -> str:
    """The name people read for ``role_id`` (the id itself for one this agent does not know)."""
    role = ROLES.get(role_id)
    return role.name if role else role_id


@dataclass(frozen=True)
class RoleDecision:
    role: Role | None
    matched_groups: tuple[str, ...]


def allows(role_id: str, needed: str) -> bool:
    """Whether ``role_id`` ranks at or above ``needed`` (both known role ids)."""
    return ROLES[role_id].rank >= ROLES[needed].rank


def configured_groups(mapping: Mapping[str, Iterable[str]]) -> list[str]:
    """Every configured group id once, most privileged role first."""
    seen: list[str] = []
    for role in sorted(ROLES.values(), key=lambda r: -r.rank):
        for group in mapping.get(role.id, ()):
            if group not in seen:
                seen.append(group)
    return seen


def is_app_role_value(value: object) -> bool:
    """Whether ``value`` is a valid app role value by Entra's rules (see above)."""
    return isinstance(value, str) and _APP_ROLE_VALUE.fullmatch(value) is not None \
        and not value.startswith(".")


def is_group_id(value: object) -> bool:
    """A group object id: a GUID in its 36-character form."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def source_of(values: Iterable[str]) -> str:
    """Which source decided a role from ``values`` (what a session keeps): group ids are
    GUIDs, app role values never are."""
    return "groups" if all(is_group_id(v) for v in values) else "app_roles"


def decide_role(user_values: Iterable[str], mapping: Mapping[str, Iterable[str]],
                source: str = "groups") -> RoleDecision:
    """The most privileged role any of ``user_values`` (group ids, or app role values with
    ``source="app_roles"``) maps to, and the values that matched."""
    exact = source == "app_roles"
    member = {v if exact else v.lower() for v in user_values if isinstance(v, str)}
    best: Role | None = None
    matched: list[str] = []
    for role_id, groups in mapping.items():
        role = ROLES[role_id]
        hits = [g for g in groups if (g if exact else g.lower()) in member]
        if hits:
            matched.extend(hits)
            if best is None or role.rank > best.rank:
                best = role
    return RoleDecision(best, tuple(matched))


def no_role_reason(source: str) -> tuple[str, str]:
    """The reason code and detail of "no role" for ``source`` (refusal, session end)."""
    if source == "app_roles":
        return "no_app_role", "the account has none of the app roles mapped to a sensor role"
    return "no_role", "the account is in none of the groups mapped to a sensor role"
