"""``[roles]``: which Entra ID groups, or which app roles, give which console role.

``source = "groups"`` (the default): each role lists group object ids (GUIDs), each group one
role. ``source = "app_roles"``: each role lists app role *values* (``"Sensor.Admin"``) as the
app registration's manifest defines them, checked by Entra's rules for a value; a GUID is
refused there (it is an app role's id, or a group's, and no ``roles`` claim carries one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..roles import ROLES, SOURCES, is_app_role_value
from .problems import Problems
from .values import is_guid

ROLE_KEYS = set(ROLES) | {"source"}
_GROUPS_HINT = "not a group object id (GUID from Entra ID > Groups)"
_VALUE_RULE = ("not an app role value: Entra allows 1-120 characters of A-Z a-z 0-9 and "
               "! # $ % & ' ( ) * + , - . / : ; < = > ? @ [ ] ^ _ ` { | } ~, no spaces, "
               "not starting with a dot (App registrations > App roles > Value)")
_GUID_AS_VALUE = ("a GUID, not an app role value: list the app role's Value (App "
                  "registrations > App roles, e.g. \"Sensor.Admin\"), not its ID; the ID "
                  "token's roles claim carries values")


def build_roles(p: Problems, r: Mapping[str, Any]) -> tuple[str, dict[str, tuple[str, ...]]]:
    """(source, role → group ids or app role values)."""
    source = r.get("source", "groups")
    if source not in SOURCES:
        p.problem("roles.source", source, 'must be "groups" (Entra group object ids) or '
                  '"app_roles" (the app registration\'s app role values)')
        source = "groups"
    app_roles = source == "app_roles"
    what = "app role values" if app_roles else "group object ids"
    roles: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for role in ROLES:
        entries = r.get(role, [])
        if not isinstance(entries, list) or not all(isinstance(g, str) for g in entries):
            p.problem(f"roles.{role}", entries, f"must be a list of {what}")
            entries = []
        clean: list[str] = []
        for entry in entries:
            why = _why_not_value(entry) if app_roles else _why_not_group(entry)
            if why:
                p.problem(f"roles.{role}", entry, why)
                continue
            key = entry if app_roles else entry.lower()
            if key in owner and owner[key] != role:
                p.problem(f"roles.{role}", entry, f"also mapped to role {owner[key]}; map "
                          f"each {'app role' if app_roles else 'group'} to one role")
            owner[key] = role
            if key not in clean:
                clean.append(key)
        roles[role] = tuple(clean)
    if not any(roles.values()) and not p.sso_off:
        p.problem("roles", None, "map at least one " + (
            "app role value" if app_roles else "Entra group") +
            " to admin, security_analyst or read_only")
    return source, roles


def _why_not_group(entry: str) -> str | None:
    if is_guid(entry):
        return None
    if is_app_role_value(entry):
        return _GROUPS_HINT + '; for app role values set [roles] source = "app_roles"'
    return _GROUPS_HINT


def _why_not_value(entry: str) -> str | None:
    if is_guid(entry):
        return _GUID_AS_VALUE
    return None if is_app_role_value(entry) else _VALUE_RULE
