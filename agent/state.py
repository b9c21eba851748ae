"""Encrypted, append-only session journal in ``state_dir`` (AES-256-GCM, key file 0600).

One line per record: base64(nonce ‖ AES-GCM(JSON record)). Appends are flushed and
fsync'd before the caller answers, so ``kill -9`` loses nothing acknowledged; compaction
rewrites the live sessions to a temporary file, fsyncs it and renames it over the journal.
A line that does not decrypt (corruption, a foreign key, a torn last write) is skipped and
the whole file is copied aside for inspection; the agent never crashes on it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
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
_AAD = b"sensor-sso-agent/sessions/v1"


class SessionJournal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_FILE
        self._aead: AESGCM | None = None
        self.lines = 0
        self.unreadable = 0

    def open(self) -> None:
        """Create the directory and key when missing (0700 / 0600); blocking."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(self._load_or_create_key())

    def _load_or_create_key(self) -> bytes:
        key_path = self.dir / KEY_FILE
        try:
            key = key_path.read_bytes()
            if len(key) == 32:
                return key
            log.error("session_key_invalid", path=str(key_path), action="set aside")
            self._set_aside(key_path)
            self._set_aside(self.path)
        except FileNotFoundError:
            pass
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key

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
        """Every readable record in order; sets the file aside if any line was unreadable."""
        self.lines = 0
        self.unreadable = 0
        try:
            journal = open(self.path, "rb")  # noqa: SIM115 - closed below, streamed line by line
        except FileNotFoundError:
            return
        bad = 0
        with journal:
            for line in journal:  # streamed: 100,000 sessions never sit in memory twice
                if not line.strip():
                    continue
                record = self._open_line(line)
                if record is None:
                    bad += 1
                    continue
                self.lines += 1
                yield record
        self.unreadable = bad
        if bad:
            aside = self._set_aside(self.path, copy=True)
            log.error("session_state_unreadable", unreadable_records=bad,
                      readable_records=self.lines, set_aside=str(aside),
                      fix="sessions in unreadable records must sign in again")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append and fsync (blocking)."""
        blob = b"".join(self._seal(r) for r in records)
        if not blob:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.lines += blob.count(b"\n")

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Atomically replace the journal with ``records`` (blocking)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        count = 0
        with os.fdopen(fd, "wb") as f:
            for record in records:
                f.write(self._seal(record))
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.lines = count

    def _set_aside(self, path: Path, copy: bool = False) -> Path | None:
        if not path.exists():
            return None
        aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        if copy:
            shutil.copy2(path, aside)
        else:
            os.replace(path, aside)
        return aside
