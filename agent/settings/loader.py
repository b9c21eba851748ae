"""Load the TOML file, pick this sensor's setting, build every section, freeze.

``load_settings`` gathers every problem into one ``ConfigError`` (key, value, why) so an
installer fixes the whole file in one go.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .checks import placeholder_problems
from .entra import ENTRA_KEYS, build_entra
from .fleet import effective_mapping
from .local import LOCAL_KEYS, build_local
from .metrics import METRICS_KEYS, build_metrics
from .model import Settings
from .problems import Problems, unknown, unreadable
from .roles import ROLE_KEYS, build_roles
from .server import SERVER_KEYS, build_server
from .session import SESSION_KEYS, build_session

DEFAULT_CONFIG_PATH = "/etc/sensor-sso-agent/agent.toml"
CONFIG_ENV = "SENSOR_SSO_AGENT_CONFIG"

SECTIONS: dict[str, set[str]] = {"server": SERVER_KEYS, "entra": ENTRA_KEYS, "roles": ROLE_KEYS,
                                 "session": SESSION_KEYS, "local": LOCAL_KEYS,
                                 "metrics": METRICS_KEYS}


def default_config_path() -> str:
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate the file at ``path``; every problem at once in a ``ConfigError``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        why = f"cannot read the file: {exc.strerror}"
        if isinstance(exc, PermissionError):
            why = unreadable(Path(path)) or why
        raise ConfigError([(str(path), "", why)]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), "", f"not valid TOML: {exc}")]) from None
    return settings_from_mapping(data, source=str(path))


def load_or_report(path: str) -> Settings | None:
    """The settings at ``path``, or None after printing every problem to stderr (for the
    commands that need a valid file: check-config, local-user, sessions)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        count = len(exc.problems)
        print(f"{path}: configuration is invalid ({count} problem{'s' if count != 1 else ''}):",
              file=sys.stderr)
        for line in problem_lines(exc):
            print(f"  {line}", file=sys.stderr)
        return None


def problem_lines(exc: ConfigError) -> list[str]:
    """``key = value: why`` for each problem (without `` = value`` when there is none)."""
    return [f"{key}{' = ' + value if value else ''}: {why}" for key, value, why in exc.problems]


def settings_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> Settings:
    effective, choice, sensor, fleet_problems = effective_mapping(data)
    p = Problems(sso_off=choice.sso_off)
    settings = replace(_build(p, effective, source), sensor=sensor, fleet=choice)
    problems = fleet_problems + [x for x in p.problems if x not in fleet_problems]
    problems += placeholder_problems(settings)  # the example's ids: no one could sign in
    if problems:
        raise ConfigError(problems)
    return settings


def _build(p: Problems, data: Mapping[str, Any], source: str) -> Settings:
    """Every section of the single-setting ``data``; problems go to ``p``."""
    for name in data:
        if name not in SECTIONS:
            p.problem(name, None, unknown("section", name, [*SECTIONS, "sensor", "setting"]))
    server = build_server(p, p.section(data, "server", SERVER_KEYS))
    entra_section = p.section(data, "entra", ENTRA_KEYS)
    entra = build_entra(p, entra_section)
    roles_source, roles = build_roles(p, p.section(data, "roles", ROLE_KEYS))
    session = build_session(p, p.section(data, "session", SESSION_KEYS),
                            platform=entra_section.get("platform", "spa"))
    local = build_local(p, p.section(data, "local", LOCAL_KEYS))
    metrics = build_metrics(p, p.section(data, "metrics", METRICS_KEYS), server)
    return Settings(entra=entra, roles=roles, server=server, session=session, local=local,
                    metrics=metrics, source=source, roles_source=roles_source)
