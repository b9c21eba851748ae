"""Encrypted, append-only session journal in ``state_dir`` (AES-256-GCM, key file 0600).

Records: one a line, ``base64(nonce ‖ AES-GCM(JSON)) + "\\n"`` — self-delimiting (the newline)
and checked (the GCM tag). The JSON is a dict with ``op`` (``put``, ``touch``, ``del``); a
``put`` carries the session's fields by name, so fields are added without a format change
(readers ignore names they do not know and default the ones they miss).

Writes: a batch goes out in a loop of ``os.write`` (a short write continues where it stopped),
then ``fsync``; on any error the file is truncated back to where the batch began and the error
is raised, so the caller knows nothing of it was saved. Reading: a torn tail (a last line
without its newline: a crash or a full disk mid-write, never acknowledged) is dropped with a
warning and truncated away; a whole line that does not decrypt is skipped and counted, and the
file is then compacted and the old one set aside by rename (never by copy: that needs space).

Full disk: a reserve file of ``RESERVE_BYTES`` is allocated beside the journal. A revocation
that meets ENOSPC frees it and tries again, so sign-outs are recorded on a full disk; while the
reserve is missing no new session is written (``writable`` is False) and every flush tries to
allocate it again.

The directory: it must belong to the user the agent runs as and not be group- or
world-writable (``StateDirUnsafe`` with the fix otherwise); files are opened relative to a
directory descriptor with ``O_NOFOLLOW`` and checked the same way; temporary files are created
with ``O_EXCL`` under a random name.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import pwd
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = structlog.get_logger("agent.state")

KEY_FILE = "session.key"
JOURNAL_FILE = "sessions.journal"
RESERVE_FILE = "sessions.reserve"
RESERVE_BYTES = 512 * 1024  # ~3,000 sign-out records
SERVICE_USER = "sensor-sso-agent"
_TEMP_PREFIX = "sessions.tmp"  # also the fixed name earlier versions used
_AAD = b"sensor-sso-agent/sessions/v1"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class StateDirUnsafe(Exception):
    """``state_dir`` or a file in it could be changed by someone other than the agent."""


class StateUnwritable(Exception):
    """Session state could not be written; the change it carried was not made."""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _owner_problem(path: Path, st: os.stat_result, uids: set[int], directory: bool) -> str | None:
    mode = "0700" if directory else "0600"
    owner = _user(max(uids))  # the service user rather than root, when both are allowed
    fix = f"chown {owner}: {path} && chmod {mode} {path}"
    if st.st_uid not in uids:
        return (f"{path} belongs to {_user(st.st_uid)}, not to the user the agent runs as "
                f"({' or '.join(sorted(_user(u) for u in uids))}); fix: {fix}")
    if stat.S_IMODE(st.st_mode) & 0o022:
        mode_now = f"{stat.S_IMODE(st.st_mode):04o}"
        return f"{path} is writable by other users (mode {mode_now}); fix: {fix}"
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
    problems = [p for p in [_owner_problem(state_dir, st, uids, True)] if p]
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
        elif problem := _owner_problem(path, fst, uids, False):
            problems.append(problem)
        elif name == KEY_FILE and stat.S_IMODE(fst.st_mode) & 0o077:
            problems.append(f"{path} is readable by other users; fix: chmod 0600 {path}, "
                            "or remove it and sessions.journal to start with a new key")
    return problems


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class SessionJournal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_FILE
        self._aead: AESGCM | None = None
        self._dfd: int | None = None
        self._fd: int | None = None  # the journal, held open for appends
        self._repair_to: int | None = None  # a failed write's start, if truncating failed
        self.lines = 0
        self.unreadable = 0
        self.reserved = False
        self.problem: str | None = None  # why state cannot be written, while it cannot

    # -- directory and files ------------------------------------------------------------

    def open(self) -> None:
        """Create (0700) or check the directory, then load or create the key; blocking.

        Raises ``StateDirUnsafe`` for a directory or file others could change, ``OSError``
        when the key cannot be read or created (a full disk on the very first start)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self._failed("open the directory", exc)
            raise
        problem = _owner_problem(self.dir, os.fstat(dfd), {os.geteuid()}, True)
        if problem:
            os.close(dfd)
            raise StateDirUnsafe(problem)
        self.close()
        self._dfd = dfd
        self._remove_stale_temps()
        try:
            self._aead = AESGCM(self._load_or_create_key())
        except OSError as exc:
            self._failed("read or create the session key", exc)
            raise
        self.probe(always=True)  # allocates the reserve too

    def close(self) -> None:
        for fd in (self._fd, self._dfd):
            if fd is not None:
                os.close(fd)
        self._fd = self._dfd = None

    def _open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """Open a file of the directory without following links; refuse others' files."""
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self._dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateDirUnsafe(f"{self.dir / name} is a symbolic link; fix: rm "
                                     f"{self.dir / name}") from exc
            raise
        st = os.fstat(fd)
        problem = None if stat.S_ISREG(st.st_mode) else \
            f"{self.dir / name} is not a regular file; fix: rm -r {self.dir / name}"
        problem = problem or _owner_problem(self.dir / name, st, {os.geteuid()}, False)
        if problem is None and name == KEY_FILE and stat.S_IMODE(st.st_mode) & 0o077:
            problem = (f"{self.dir / name} is readable by other users; fix: chmod 0600 "
                       f"{self.dir / name}")
        if problem:
            os.close(fd)
            raise StateDirUnsafe(problem)
        return fd

    def _remove_stale_temps(self) -> None:
        for name in os.listdir(self._dfd):
            if name.startswith(_TEMP_PREFIX):
                try:  # a planted symlink: the link goes, not its target
                    os.unlink(name, dir_fd=self._dfd)
                except OSError as exc:
                    log.warning("session_state_stale_file", path=str(self.dir / name),
                                error=exc.strerror, fix=f"remove {self.dir / name}")

    def _load_or_create_key(self) -> bytes:
        try:
            fd = self._open(KEY_FILE, os.O_RDONLY)
        except FileNotFoundError:
            pass
        else:
            try:
                key = os.read(fd, 33)
            finally:
                os.close(fd)
            if len(key) == 32:
                return key
            log.error("session_key_invalid", path=str(self.dir / KEY_FILE), action="set aside")
            self._set_aside(KEY_FILE)
            self._set_aside(JOURNAL_FILE)
        key = AESGCM.generate_key(bit_length=256)
        fd = self._open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            _write_all(fd, key)
            os.fsync(fd)
        except OSError:
            os.unlink(KEY_FILE, dir_fd=self._dfd)
            raise
        finally:
            os.close(fd)
        os.fsync(self._dfd)  # type: ignore[arg-type]
        return key

    def _set_aside(self, name: str) -> Path | None:
        """Rename ``name`` to ``name.unreadable-<time>`` (no copy: that needs space)."""
        base = f"{name}.unreadable-{int(time.time())}"
        aside, n = base, 1
        while os.path.lexists(self.dir / aside):
            aside, n = f"{base}-{n}", n + 1
        try:
            os.rename(name, aside, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
        except FileNotFoundError:
            return None
        if name == JOURNAL_FILE:
            self._close_journal()
        return self.dir / aside

    # -- records ----------------------------------------------------------------------

    def _seal(self, record: dict[str, Any]) -> bytes:
        assert self._aead is not None
        nonce = secrets.token_bytes(12)
        data = json.dumps(record, separators=(",", ":")).encode()
        return base64.b64encode(nonce + self._aead.encrypt(nonce, data, _AAD)) + b"\n"

    def _open_line(self, line: bytes) -> dict[str, Any] | None:
        assert self._aead is not None
        try:
            raw = base64.b64decode(line.strip(), validate=True)
            plain = self._aead.decrypt(raw[:12], raw[12:], _AAD)
            record = json.loads(plain)
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def replay(self) -> Iterator[dict[str, Any]]:
        """Every readable record in order. A torn tail is truncated away with a warning;
        whole lines that do not decrypt are counted in ``unreadable`` (the caller compacts)."""
        self.lines = 0
        self.unreadable = 0
        try:
            fd = self._open(JOURNAL_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return
        end = 0
        torn = b""
        with os.fdopen(fd, "rb") as journal:
            for line in journal:  # streamed: 100,000 sessions never sit in memory twice
                if not line.endswith(b"\n"):
                    torn = line
                    break
                end += len(line)
                if not line.strip():
                    continue
                record = self._open_line(line)
                if record is None:
                    self.unreadable += 1
                    continue
                self.lines += 1
                yield record
        if torn:
            log.warning("session_state_torn_tail", dropped_bytes=len(torn),
                        readable_records=self.lines,
                        why="a write was cut short (crash or full disk) before it was "
                            "acknowledged; the records before and after it are kept")
            self._truncate(end)
        if self.unreadable:
            log.error("session_state_unreadable", unreadable_records=self.unreadable,
                      readable_records=self.lines,
                      fix="sessions in unreadable records must sign in again")

    def _truncate(self, size: int) -> None:
        try:
            fd = self._open(JOURNAL_FILE, os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("session_state_truncate_failed", error=exc.strerror)
            self._repair_to = size

    # -- writing ----------------------------------------------------------------------

    def _journal(self) -> int:
        if self._fd is None:
            created = not os.path.lexists(self.path)
            self._fd = self._open(JOURNAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            if created:
                os.fsync(self._dfd)  # type: ignore[arg-type]
        return self._fd

    def _close_journal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, blob: bytes) -> None:
        """All of ``blob`` and fsync, or nothing (truncated back) and the error."""
        fd = self._journal()
        if self._repair_to is not None:
            os.ftruncate(fd, self._repair_to)
            self._repair_to = None
        start = os.fstat(fd).st_size
        try:
            _write_all(fd, blob)
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._repair_to = start
            raise

    def append(self, records: Iterable[dict[str, Any]], *, revocation: bool = False) -> None:
        """Append and fsync (blocking); raises ``OSError`` with nothing written. A
        ``revocation`` that meets a full disk frees the reserve and tries once more."""
        blob = b"".join(self._seal(r) for r in records)
        if not blob:
            return
        try:
            self._write(blob)
        except OSError as exc:
            self._failed("write sessions.journal", exc)
            if not (revocation and exc.errno in _NO_SPACE and self.reserved):
                raise
            self.release_reserve()
            log.warning("session_state_reserve_used", why="the disk is full: the space kept "
                        "for sign-outs records this one; no new sessions until space is free")
            try:
                self._write(blob)
            except OSError as again:
                self._failed("write sessions.journal", again)
                raise
        self.lines += blob.count(b"\n")
        self._succeeded()

    def rewrite(self, records: Iterable[dict[str, Any]], *, set_aside: bool = False
                ) -> Path | None:
        """Atomically replace the journal with ``records`` (blocking); with ``set_aside``
        the old journal is renamed aside first. Returns where it was set aside."""
        name = f"{_TEMP_PREFIX}-{secrets.token_hex(8)}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self._dfd)
        count = 0
        try:
            with os.fdopen(fd, "wb") as f:  # BufferedWriter: short writes continue
                for record in records:
                    f.write(self._seal(record))
                    count += 1
                f.flush()
                os.fsync(f.fileno())
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dfd)
            if isinstance(exc, OSError):
                self._failed("compact sessions.journal", exc)
            raise
        aside = self._set_aside(JOURNAL_FILE) if set_aside else None
        os.rename(name, JOURNAL_FILE, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
        os.fsync(self._dfd)  # type: ignore[arg-type]
        self._close_journal()
        self._repair_to = None
        self.lines = count
        self._succeeded()
        return aside

    # -- the reserve and the writable state ---------------------------------------------

    def ensure_reserve(self) -> bool:
        """Allocate the reserve when missing; False (and ``problem`` set) when impossible."""
        if self.reserved:
            return True
        try:
            fd = self._open(RESERVE_FILE, os.O_WRONLY | os.O_CREAT)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
                raise
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed("allocate the space kept for sign-outs", exc)
            return False
        self.reserved = True
        self._succeeded()
        return True

    def release_reserve(self) -> None:
        fd = self._open(RESERVE_FILE, os.O_WRONLY | os.O_CREAT)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        self.reserved = False

    def probe(self, always: bool = False) -> bool:
        """Can new blocks be written now? Sets or clears ``problem``. Without ``always`` it
        only looks while a problem is known."""
        if self.problem is None and not always:
            return True
        if not self.reserved and self._dfd is not None:
            # Re-allocate the reserve only with room to spare: the space it gave back to
            # record sign-outs must not be taken again before the disk has really been freed.
            st = os.statvfs(self._dfd)
            if st.f_bavail * st.f_frsize < 2 * RESERVE_BYTES and os.path.lexists(
                    self.dir / RESERVE_FILE):
                return False
        if not self.ensure_reserve():
            return False
        name = f"{_TEMP_PREFIX}-probe-{secrets.token_hex(4)}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=self._dfd)
            try:
                os.posix_fallocate(fd, 0, 64 * 1024)
            finally:
                os.close(fd)
                os.unlink(name, dir_fd=self._dfd)
        except OSError as exc:
            self._failed("write a test block", exc)
            return False
        self._succeeded()
        return True

    @property
    def writable(self) -> bool:
        """New sessions may be written: the reserve is there and the last write worked."""
        return self.reserved and self.problem is None

    def _failed(self, what: str, exc: OSError) -> None:
        problem = f"cannot {what} in {self.dir}: {exc.strerror or exc}"
        if self.problem is None:
            log.error("session_state_write_failed", error=exc.strerror or str(exc), what=what,
                      directory=str(self.dir), fix="free space on the file system of "
                      "state_dir, or make it writable by the service user; new sign-ins "
                      "are refused until then, signed-in users keep working")
        self.problem = problem

    def _succeeded(self) -> None:
        if self.problem is not None and self.reserved:
            log.info("session_state_writable", directory=str(self.dir))
            self.problem = None
