"""Run a check as the service user, so that what it reads is what the service can read.

An operator runs ``check-config`` as root; the unit runs the agent as ``sensor-sso-agent``.
A root-only (0600) CA bundle or ``agent.toml`` passes as root and fails in the service.
``as_service_user`` runs the check in a forked child that has dropped to the service user's
uid, gid and groups (root only; anyone else checks as themself). The parent runs it once
first, as itself, only to import every module the check needs: the child may not be able to
read the interpreter's files (e.g. a Python under /root), the installed venv in /opt it can.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Callable

SERVICE_USER = "sensor-sso-agent"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def as_service_user(check: Callable[[], int], user: str | None = None) -> int:
    """``check()``'s exit status, run as ``user`` (default: the service user) when root."""
    if os.geteuid() != 0:
        return check()
    name = user or SERVICE_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        print(f"note: user {name} does not exist here; checked as root, who reads every "
              "file: the service's user may not", file=sys.stderr)
        return check()
    _warm_up(check)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user for good, check, report by exit status
        code = 1
        try:
            os.setgroups(os.getgrouplist(name, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            code = check()
        except BaseException as exc:  # never return into the parent's code path
            print(f"check as user {name} failed: {exc}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _warm_up(check: Callable[[], int]) -> None:
    """Run ``check`` as root with its output thrown away: only its imports matter."""
    with open(os.devnull, "w") as devnull:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = devnull
        try:
            check()
        except Exception:  # noqa: S110 - the real check in the child reports everything
            pass
        finally:
            sys.stdout, sys.stderr = saved
