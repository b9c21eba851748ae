"""The encrypted, append-only session journal in ``state_dir``.

Lines and what they hold: ``journal_lines``; the directory, the key and the space kept for
sign-outs: ``statefiles``; who may own the directory: ``statedir``.

Writes: a batch goes out in a loop of ``os.write`` (a short write continues where it stopped),
then ``fsync``; on any error the file is truncated back to where the batch began and the error
is raised, so the caller knows nothing of it was saved. Reading: a torn tail (a last line
without its newline: a crash or a full disk mid-write, never acknowledged) is dropped with a
warning and truncated away; a whole line that does not decrypt is skipped and counted, and the
file is then compacted and the old one set aside by rename (never by copy: that needs space).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from ..errors import AgentError, StateUnwritable
from .files import RESERVE_BYTES, TEMP_PREFIX, StateFiles, write_all
from .lines import TOKEN_MARK, CopiedLine, Item, Record, TokenLine
from .statedir import (
    JOURNAL_FILE,
    KEY_FILE,
    RESERVE_FILE,
    StateDirUnsafe,
    state_dir_problems,
)

log = structlog.get_logger("agent.state")

__all__ = ["JOURNAL_FILE", "KEY_FILE", "RESERVE_BYTES", "RESERVE_FILE", "JournalOutOfStep",
           "SessionJournal", "StateDirUnsafe", "StateUnwritable", "state_dir_problems"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_LONGEST_LINE = 1 << 20  # a token line is about 1.5 kB; anything longer is not one


class JournalOutOfStep(AgentError):
    """A refresh token line to copy is not where the sessions' index says it starts: the
    agent's own bug (the journal is only written by it), never a disk problem."""


class SessionJournal(StateFiles):
    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self._repair_to: int | None = None  # a failed write's start, if truncating failed
        self.lines = 0
        self.unreadable = 0

    # -- reading ------------------------------------------------------------------------

    def replay(self) -> Iterator[Record | int]:
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
        with os.fdopen(fd, "rb", buffering=1 << 20) as journal:
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
            if isinstance(item, list | dict):
                yield sealer.seal(item)
            elif isinstance(item, TokenLine):
                yield sealer.seal_token(item.key, item.token)
            else:
                line = self._line_at(source, item.at) if source is not None else b""
                if not line.startswith(TOKEN_MARK):
                    log.error("session_journal_out_of_step", path=str(self.path), at=item.at,
                              fix="restart the agent (it rebuilds the journal from what it "
                                  "can read) and report this as a bug")
                    raise JournalOutOfStep(f"no token line at {item.at} of {self.path}")
                yield line

    def _journal(self) -> int:
        if self._fd is None:
            created = not os.path.lexists(self.path)
            self._fd = self._open(JOURNAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            if created:
                self._sync_directory()
        return self._fd

    def _write(self, blob: bytes) -> int:
        """All of ``blob`` and fsync, or nothing (truncated back) and the error; returns
        where it starts."""
        fd = self._journal()
        if self._repair_to is not None:
            os.ftruncate(fd, self._repair_to)
            self._repair_to = None
        start = os.fstat(fd).st_size
        try:
            write_all(fd, blob)
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
        name = f"{TEMP_PREFIX}-{secrets.token_hex(8)}"
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
        self._sync_directory()
        self._close_journal()
        self._repair_to = None
        self.lines = len(offsets)
        self._succeeded()
        return aside, offsets
