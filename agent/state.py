"""The encrypted, append-only session journal in ``state_dir`` (key file 0600).

Lines and what they hold: ``journal_lines``; who may own the directory: ``statedir``.

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

Files are opened relative to a directory descriptor with ``O_NOFOLLOW`` and checked like the
directory; temporary files are created with ``O_EXCL`` under a random name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import AgentError
from .journal_lines import TOKEN_MARK, CopiedLine, Item, Sealer, TokenLine
from .statedir import (
    JOURNAL_FILE,
    KEY_FILE,
    RESERVE_FILE,
    StateDirUnsafe,
    open_checked,
    open_directory,
    state_dir_problems,
)

log = structlog.get_logger("agent.state")

__all__ = ["JOURNAL_FILE", "KEY_FILE", "RESERVE_BYTES", "RESERVE_FILE", "SessionJournal",
           "StateDirUnsafe", "StateUnwritable", "state_dir_problems"]

RESERVE_BYTES = 512 * 1024  # ~3,000 sign-out records
_TEMP_PREFIX = "sessions.tmp"  # also the fixed name earlier versions used
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_LONGEST_LINE = 1 << 20  # a token line is about 1.5 kB; anything longer is not one


class StateUnwritable(AgentError):
    """Session state could not be written; the change it carried was not made."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class SessionJournal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_FILE
        self._sealer: Sealer | None = None
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
        assert self._sealer is not None, "SessionJournal.open() first"
        return self._sealer

    def close(self) -> None:
        for fd in (self._fd, self._dfd):
            if fd is not None:
                os.close(fd)
        self._fd = self._dfd = None

    def _open(self, name: str, flags: int, mode: int = 0o600) -> int:
        return open_checked(self._dfd, self.dir, name, flags, mode)

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

    # -- reading ------------------------------------------------------------------------

    def replay(self) -> Iterator[dict[str, Any] | int]:
        """Every readable record in order, and for a refresh-token line where it starts (it
        is not decoded here). A torn tail is truncated away with a warning; whole lines that
        do not decrypt are counted in ``unreadable`` (the caller compacts)."""
        self.lines = 0
        self.unreadable = 0
        try:
            fd = self._open(JOURNAL_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return
        open_line = self.sealer.open
        end = 0
        torn = b""
        with os.fdopen(fd, "rb") as journal:
            for line in journal:  # streamed: 100,000 sessions never sit in memory twice
                at = end
                end += len(line)
                if line[-1:] != b"\n":
                    torn = line
                    end = at
                    break
                if line.startswith(TOKEN_MARK):
                    self.lines += 1
                    yield at
                    continue
                record = open_line(line)
                if record is None:
                    if line.strip():
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

    def _line_at(self, fd: int, at: int) -> bytes:
        """The line that starts at ``at`` (empty when there is none)."""
        chunk = os.pread(fd, 4096, at)
        while b"\n" not in chunk and len(chunk) < _LONGEST_LINE:
            more = os.pread(fd, 65536, at + len(chunk))
            if not more:
                break
            chunk += more
        return chunk.split(b"\n", 1)[0] + b"\n" if b"\n" in chunk else b""

    def read_token(self, at: int, key: bytes) -> str | None:
        """The refresh token in the line at ``at``, if that line is ``key``'s (blocking)."""
        fd = self._open(JOURNAL_FILE, os.O_RDONLY)
        try:
            return self.sealer.open_token(self._line_at(fd, at), key)
        finally:
            os.close(fd)

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

    def _lines(self, items: Iterable[Item], source: int | None) -> Iterator[bytes]:
        sealer = self.sealer
        for item in items:
            if isinstance(item, dict):
                yield sealer.seal(item)
            elif isinstance(item, TokenLine):
                yield sealer.seal_token(item.key, item.token)
            else:
                assert source is not None
                line = self._line_at(source, item.at)
                if not line.startswith(TOKEN_MARK):
                    raise OSError(errno.EIO, f"no token line at {item.at} of {self.path}")
                yield line

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

    def _write(self, blob: bytes) -> int:
        """All of ``blob`` and fsync, or nothing (truncated back) and the error; returns
        where it starts."""
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
        return start

    def append(self, items: Iterable[Item], *, revocation: bool = False) -> list[int]:
        """Append and fsync (blocking); returns where each item's line starts. Raises
        ``OSError`` with nothing written. A ``revocation`` that meets a full disk frees the
        reserve and tries once more."""
        items = list(items)
        source = self._open(JOURNAL_FILE, os.O_RDONLY) if any(
            isinstance(i, CopiedLine) for i in items) else None
        try:
            lines = list(self._lines(items, source))
        finally:
            if source is not None:
                os.close(source)
        blob = b"".join(lines)
        if not blob:
            return []
        try:
            start = self._write(blob)
        except OSError as exc:
            self._failed("write sessions.journal", exc)
            if not (revocation and exc.errno in _NO_SPACE and self.reserved):
                raise
            self.release_reserve()
            log.warning("session_state_reserve_used", why="the disk is full: the space kept "
                        "for sign-outs records this one; no new sessions until space is free")
            try:
                start = self._write(blob)
            except OSError as again:
                self._failed("write sessions.journal", again)
                raise
        self.lines += len(lines)
        self._succeeded()
        offsets = []
        for line in lines:
            offsets.append(start)
            start += len(line)
        return offsets

    def rewrite(self, items: Iterable[Item], *, set_aside: bool = False
                ) -> tuple[Path | None, list[int]]:
        """Atomically replace the journal with ``items`` (blocking); with ``set_aside`` the
        old journal is renamed aside first. Returns where it was set aside and where each
        item's line starts in the new journal."""
        name = f"{_TEMP_PREFIX}-{secrets.token_hex(8)}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self._dfd)
        offsets: list[int] = []
        at = 0
        try:
            try:
                source: int | None = self._open(JOURNAL_FILE, os.O_RDONLY)
            except FileNotFoundError:
                source = None
            try:
                with os.fdopen(fd, "wb") as f:  # BufferedWriter: short writes continue
                    for line in self._lines(items, source):
                        f.write(line)
                        offsets.append(at)
                        at += len(line)
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                if source is not None:
                    os.close(source)
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
        self.lines = len(offsets)
        self._succeeded()
        return aside, offsets

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
