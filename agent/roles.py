"""Entra group membership → sensor role. Pure: no I/O.

A user in the groups of several roles gets the most privileged one; a user in none gets
no role and is refused by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


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


def decide_role(user_groups: Iterable[str], mapping: Mapping[str, Iterable[str]]) -> RoleDecision:
    """The most privileged role any of ``user_groups`` maps to, and the groups that matched."""
    member = {g.lower() for g in user_groups if isinstance(g, str)}
    best: Role | None = None
    matched: list[str] = []
    for role_id, groups in mapping.items():
        role = ROLES[role_id]
        hits = [g for g in groups if g.lower() in member]
        if hits:
            matched.extend(hits)
            if best is None or role.rank > best.rank:
                best = role
    return RoleDecision(best, tuple(matched))
