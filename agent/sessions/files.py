"""The files of ``state_dir`` below the journal: the directory, the key, the reserve.

``StateFiles.open`` creates (0700) or checks the directory and loads or creates the key
(0600); files are opened relative to a directory descriptor with ``O_NOFOLLOW`` and checked
like the directory (``statedir``); temporary files are created with ``O_EXCL`` under a random
name, and stale ones from a crash are removed (a planted link: the link, not its target).
A file that cannot be used is set aside by rename, never copied (a copy needs space).

Full disk: a reserve file of ``RESERVE_BYTES`` is allocated beside the journal. A revocation
that meets ENOSPC frees it and tries again, so sign-outs are recorded on a full disk; while the
reserve is missing no new session is written (``writable`` is False) and every flush tries to
allocate it again (``probe``).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .lines import Sealer
from .statedir import JOURNAL_FILE, KEY_FILE, RESERVE_FILE, open_checked, open_directory

log = structlog.get_logger("agent.state")

RESERVE_BYTES = 512 * 1024  # ~3,000 sign-out records
TEMP_PREFIX = "sessions.tmp"  # also the fixed name earlier versions used


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class StateFiles:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_FILE
        self._sealer: Sealer | None = None
        self._dfd: int | None = None
        self._fd: int | None = None  # the journal, held open for appends
        self.reserved = False
        self.problem: str | None = None  # why state cannot be written, while it cannot

    # -- directory and files ------------------------------------------------------------

    def open(self) -> None:
        """Create (0700) or check the directory, then load or create the key; blocking.

        Raises ``StateDirUnsafe`` for a directory or file others could change, ``OSError``
        when the key cannot be read or created (a full disk on the very first start)."""
        try:
            dfd = open_directory(self.dir)
        except OSError as exc:
            self._failed("open the directory", exc)
            raise
        self.close()
        self._dfd = dfd
        self._remove_stale_temps()
        try:
            self._sealer = Sealer(self._load_or_create_key())
        except OSError as exc:
            self._failed("read or create the session key", exc)
            raise
        self.probe(always=True)  # allocates the reserve too

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise RuntimeError("StateFiles.open() first: the session key is not loaded")
        return self._sealer

    def _sync_directory(self) -> None:
        """fsync the directory, so that a file created or renamed in it survives a crash."""
        if self._dfd is None:
            raise RuntimeError("StateFiles.open() first: the directory is not open")
        os.fsync(self._dfd)

    def close(self) -> None:
        for fd in (self._fd, self._dfd):
            if fd is not None:
                os.close(fd)
        self._fd = self._dfd = None

    def _open(self, name: str, flags: int, mode: int = 0o600) -> int:
        return open_checked(self._dfd, self.dir, name, flags, mode)

    def _remove_stale_temps(self) -> None:
        for name in os.listdir(self._dfd):
            if name.startswith(TEMP_PREFIX):
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
            write_all(fd, key)
            os.fsync(fd)
        except OSError:
            os.unlink(KEY_FILE, dir_fd=self._dfd)
            raise
        finally:
            os.close(fd)
        self._sync_directory()
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

    def _close_journal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
        name = f"{TEMP_PREFIX}-probe-{secrets.token_hex(4)}"
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
