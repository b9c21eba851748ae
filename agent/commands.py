"""The command line's actions: check-config, serve, check-connectivity.

``serve`` loads and checks the configuration, then hands the process to agent/lifecycle.py
(systemd notifications, readiness, watchdog, SIGHUP reload, graceful stop).
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from .errors import ConfigError
from .lifecycle import listen_address, run_service
from .local.signin import describe_local
from .logging import configure_logging
from .service_user import as_service_user, current_user
from .sessions.journal import StateDirUnsafe, state_dir_problems
from .settings import (
    Settings,
    config_warnings,
    entra_notes,
    load_or_report,
    load_settings,
    problem_lines,
)
from .show_config import mapped_text, role_source_text
from .version_check import check_sensor_version

log = structlog.get_logger("agent")


def check_config(path: str, user: str | None = None) -> int:
    """Validate ``path`` as the service user reads it (see service_user.py)."""
    return as_service_user(lambda: _check_config(path), user)


def _check_config(path: str) -> int:
    settings = load_or_report(path)
    if settings is None:
        return 1
    unsafe = state_dir_problems(settings.session.state_dir)
    if unsafe:
        print(f"{path}: session.state_dir = {settings.session.state_dir} is unsafe "
              f"({len(unsafe)} problem{'s' if len(unsafe) != 1 else ''}):", file=sys.stderr)
        for line in unsafe:
            print(f"  {line}", file=sys.stderr)
        return 1
    if settings.sso_off:
        print(f"{path}: configuration is valid; SSO is off on this sensor: "
              f"{settings.sso_off_reason}")
        _warn_sso_off(settings)
    else:
        print(f"{path}: configuration is valid (tenant {settings.entra.tenant_id}, "
              f"{mapped_text(settings)}, callback {settings.entra.redirect_path})")
        print(f"note: {role_source_text(settings)}")
        for note in entra_notes(settings):
            print(f"note: {note}")
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    local_notes, local_warnings = describe_local(settings)
    for line in local_notes:
        print(f"note: {line}")
    for line in local_warnings:
        print(f"warning: {line}", file=sys.stderr)
    if settings.metrics.enabled:
        print(f"note: Prometheus metrics at http://{settings.metrics.listen}/metrics")
    print(f"note: files read as user {current_user()}")
    release = check_sensor_version(settings.server.sensor_version_file)
    if release.ok:
        print(f"note: {release.message}")
    else:
        print(f"warning: {release.message}", file=sys.stderr)
    return 0


def _warn_sso_off(settings: Settings) -> None:
    """No [[setting]] applies: say so loudly, with the names the file does know."""
    known = settings.fleet.known if settings.fleet is not None else ()
    print("warning: no [[setting]] applies to this sensor, so the sign-in page offers no SSO; "
          "check [sensor] name, site and zone against the settings' scopes", file=sys.stderr)
    for scope, names in known:
        listed = ", ".join(repr(n) for n in names) if names else "(none)"
        print(f"  {scope} named in [[setting]] blocks: {listed}", file=sys.stderr)


def check_connectivity(path: str) -> int:
    try:
        settings = load_settings(path)
    except ConfigError:
        return _check_config(path)
    from .connectivity.check import run_checks

    return asyncio.run(run_checks(settings))


def serve(path: str) -> int:
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for line in problem_lines(exc):
            print(line, file=sys.stderr)
        return 1
    configure_logging()
    for warning in config_warnings(settings):
        log.warning("config_warning", config=path, warning=warning)
    try:
        asyncio.run(run_service(settings, config_path=path))
    except StateDirUnsafe as exc:
        log.error("state_dir_unsafe", problem=str(exc), directory=str(settings.session.state_dir),
                  why="whoever can change it can forge sessions with a planted key")
        return 1
    except OSError as exc:
        log.error("serve_failed", error=exc.strerror or str(exc), listen=listen_address(settings))
        return 1
    return 0
