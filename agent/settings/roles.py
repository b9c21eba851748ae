"""``[roles]``: which Entra ID groups give which console role (each group one role)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..roles import ROLES
from .problems import Problems
from .values import is_guid

ROLE_KEYS = set(ROLES)


def build_roles(p: Problems, r: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    roles: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for role in ROLES:
        groups = r.get(role, [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            p.problem(f"roles.{role}", groups, "must be a list of group object ids")
            groups = []
        clean: list[str] = []
        for group in groups:
            if not is_guid(group):
                p.problem(f"roles.{role}", group,
                          "not a group object id (GUID from Entra ID > Groups)")
                continue
            gid = group.lower()
            if gid in owner and owner[gid] != role:
                p.problem(f"roles.{role}", group,
                          f"also mapped to role {owner[gid]}; map each group to one role")
            owner[gid] = role
            if gid not in clean:
                clean.append(gid)
        roles[role] = tuple(clean)
    if not any(roles.values()) and not p.sso_off:
        p.problem("roles", None,
                  "map at least one Entra group to admin, security_analyst or read_only")
    return roles
