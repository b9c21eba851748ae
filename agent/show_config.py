"""``sensor-sso-agent show-config``: the setting this sensor runs with, and why it was chosen.

Prints the sensor's identity, which ``[[setting]]`` applies (and which scope matched), then
the effective values. Secrets are masked: a client secret is never read out, only whether
its file is set; proxy credentials are hidden.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

from .settings import Settings, format_duration, listen_text, load_or_report
from .settings.values import mask_login

MASK = "******"
_SECRET_KEYS = {"client_secret_file"}


def describe(settings: Settings) -> list[str]:
    """The lines show-config prints."""
    lines = [f"# configuration: {settings.source}"]
    s = settings.sensor
    given = [f"{k}={v!r}" for k, v in (("name", s.name), ("site", s.site), ("zone", s.zone))
             if v is not None]
    lines.append(f"sensor: {' '.join(given)}" if given else
                 "sensor: (no [sensor] table: not needed without [[setting]] blocks)")
    choice = settings.fleet
    if choice is None or choice.level == "single":
        lines.append("setting: (single-setting form)")
        lines.append("why: [entra] and [roles] apply to every sensor using this file")
    elif choice.sso_off:
        lines.append("setting: none: SSO is OFF for this sensor")
        lines.append(f"why: {choice.why}")
        return lines
    else:
        lines.append(f"setting: {choice.setting!r} (matched at the {choice.level} level)")
        lines.append(f"why: {choice.why}")
    for section in ("server", "entra", "session", "local"):
        lines.append(f"[{section}]")
        values = getattr(settings, section)
        for f in dataclasses.fields(values):
            if f.name == "listen_port":
                continue
            if f.name == "listen_host":  # the file's key: listen = "host:port"
                lines.append(f"listen = {listen_text(values.listen_host, values.listen_port)!r}")
                continue
            value = getattr(values, f.name)
            if _is_duration(f) and isinstance(value, int | float):
                lines.append(f"{f.name} = {format_duration(value)!r}")
                continue
            lines.append(f"{f.name} = {_show(f.name, value)}")
    lines.append("[roles]")
    lines.append(f"source = {settings.roles_source!r}  # {role_source_text(settings)}")
    for role, groups in settings.roles.items():
        lines.append(f"{role} = {list(groups)!r}")
    lines.append("[metrics]")
    lines.append(f"listen = {settings.metrics.listen!r}"
                 + ("" if settings.metrics.enabled else "  # off: no metrics listener"))
    return lines


def role_source_text(settings: Settings) -> str:
    """Where this sensor's roles come from, in an operator's words."""
    if settings.roles_source == "app_roles":
        return ("roles from app roles: the ID token's roles claim alone (app role values "
                "assigned under Enterprise applications > Users and groups; no Graph call)")
    return ("roles from Entra groups: the ID token's groups claim, Graph checkMemberGroups "
            "on overage")


def mapped_text(settings: Settings) -> str:
    """``3 groups mapped`` / ``3 app role values mapped``."""
    count = sum(len(g) for g in settings.roles.values())
    what = "app role value" if settings.roles_source == "app_roles" else "group"
    return f"{count} {what}{'s' if count != 1 else ''} mapped"


def _is_duration(f: dataclasses.Field[Any]) -> bool:
    """Every float-typed setting is a duration in seconds ("30m" in the file)."""
    return str(f.type).replace(" ", "") in ("float", "float|None")


def _show(key: str, value: Any) -> str:
    if value is None:
        return "(not set)"
    if key in _SECRET_KEYS:
        return f"{MASK} (from {value})"
    if key == "https_proxy":
        return repr(mask_login(str(value)))
    if isinstance(value, Path):
        return repr(str(value))
    return repr(value)


def show_config(path: str, out: TextIO | None = None) -> int:
    """Print ``describe`` for the file at ``path``; an invalid file is reported as
    check-config reports it (``load_or_report``: every problem on stderr, exit 1)."""
    settings = load_or_report(path)
    if settings is None:
        return 1
    print("\n".join(describe(settings)), file=out or sys.stdout)
    return 0
