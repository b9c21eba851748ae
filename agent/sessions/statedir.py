"""Who may change ``state_dir`` and the files in it (checked by ``serve`` and ``check-config``).

Whoever can write to ``state_dir`` can plant ``session.key`` (and forge every session) or a
journal of their own: the directory must belong to the user the agent runs as and not be
group- or world-writable, and its files must be regular files of that user (never symbolic
links; the key not readable by others). ``StateDirUnsafe`` carries the command that fixes it.
Files are opened relative to a directory descriptor with ``O_NOFOLLOW`` (``open_checked``).
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path

from ..errors import AgentError

KEY_FILE = "session.key"
JOURNAL_FILE = "sessions.journal"
RESERVE_FILE = "sessions.reserve"
SERVICE_USER = "sensor-sso-agent"


class StateDirUnsafe(AgentError):
    """``state_dir`` or a file in it could be changed by someone other than the agent."""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner_problem(path: Path, st: os.stat_result, uids: set[int], directory: bool,
                  service_user: str = SERVICE_USER) -> str | None:
    """Why ``path`` is not safe for an agent running as one of ``uids``, with the fix.
    Run as root (``serve`` by hand), the fix names ``service_user``, never root: a state
    directory chowned to root locks the service out."""
    mode = "0700" if directory else "0600"
    service = _uid(service_user) if os.geteuid() == 0 else None
    owner = service_user if service is not None else _user(max(uids))
    fix = f"chown {owner}: {path} && chmod {mode} {path}"
    if st.st_uid not in uids:
        if service is not None and st.st_uid == service:
            return (f"{path} belongs to {service_user}, the service's user, but this agent "
                    f"runs as root; fix: run it as the service does (systemctl start "
                    f"sensor-sso-agent, or runuser -u {service_user} -- sensor-sso-agent "
                    f"serve), and do not chown it to root: that locks the service out")
        return (f"{path} belongs to {_user(st.st_uid)}, not to the user the agent runs as "
                f"({' or '.join(sorted(_user(u) for u in uids))}); fix: {fix}")
    if stat.S_IMODE(st.st_mode) & 0o022:
        mode_now = f"{stat.S_IMODE(st.st_mode):04o}"
        return f"{path} is writable by other users (mode {mode_now}); fix: {fix}"
    return None


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def allowed_owners() -> set[int]:
    """Who may own ``state_dir``: the user we run as; for root (check-config by hand) also
    the packaged service user."""
    uids = {os.geteuid()}
    if os.geteuid() == 0:
        try:
            uids.add(pwd.getpwnam(SERVICE_USER).pw_uid)
        except KeyError:
            pass
    return uids


def state_dir_problems(state_dir: Path, uids: set[int] | None = None) -> list[str]:
    """Why ``state_dir`` is unsafe (empty when safe, or missing: the agent creates it 0700)."""
    uids = allowed_owners() if uids is None else uids
    try:
        st = os.stat(state_dir)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{state_dir}: {exc.strerror}"]
    if not stat.S_ISDIR(st.st_mode):
        return [f"{state_dir} is not a directory"]
    problems = [p for p in [owner_problem(state_dir, st, uids, True)] if p]
    for name in (KEY_FILE, JOURNAL_FILE, RESERVE_FILE):
        path = state_dir / name
        try:
            fst = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
            continue
        if stat.S_ISLNK(fst.st_mode):
            problems.append(f"{path} is a symbolic link; fix: rm {path}")
        elif not stat.S_ISREG(fst.st_mode):
            problems.append(f"{path} is not a regular file; fix: rm -r {path}")
        elif problem := owner_problem(path, fst, uids, False):
            problems.append(problem)
        elif name == KEY_FILE and stat.S_IMODE(fst.st_mode) & 0o077:
            problems.append(f"{path} is readable by other users; fix: chmod 0600 {path}, "
                            "or remove it and sessions.journal to start with a new key")
    return problems


def open_directory(directory: Path) -> int:
    """Create (0700) or open ``directory``; raises ``StateDirUnsafe`` when others could
    change it, ``OSError`` when it cannot be created or opened."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    problem = owner_problem(directory, os.fstat(dfd), {os.geteuid()}, True)
    if problem:
        os.close(dfd)
        raise StateDirUnsafe(problem)
    return dfd


def open_checked(dfd: int | None, directory: Path, name: str, flags: int,
                 mode: int = 0o600) -> int:
    """Open a file of the directory without following links; refuse others' files."""
    path = directory / name
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateDirUnsafe(f"{path} is a symbolic link; fix: rm {path}") from exc
        raise
    st = os.fstat(fd)
    problem = None if stat.S_ISREG(st.st_mode) else \
        f"{path} is not a regular file; fix: rm -r {path}"
    problem = problem or owner_problem(path, st, {os.geteuid()}, False)
    if problem is None and name == KEY_FILE and stat.S_IMODE(st.st_mode) & 0o077:
        problem = f"{path} is readable by other users; fix: chmod 0600 {path}"
    if problem:
        os.close(fd)
        raise StateDirUnsafe(problem)
    return fd
