"""The session journal's line format: what one line holds and how it is sealed.

Every line is ``base64(nonce ‖ AES-256-GCM(JSON)) + "\\n"``: self-delimiting (the newline) and
checked (the GCM tag). A record line's JSON is a list whose first element says what
it is (``session_record``: ``p`` put, ``t`` touch, ``d`` delete; earlier versions wrote dicts
with ``op``). A session's refresh token has a line of its own, marked by a leading ``~`` (never a
base64 character) and sealed with other associated data, holding ``{"key", "refresh_token"}``;
it follows its session's ``put`` line directly. Restoring 100,000 sessions therefore never
decodes a refresh token (nor keeps one in memory): it notes where each token line starts and
reads the one it needs at re-validation, checking that it names the session it was asked for.
"""

from __future__ import annotations

import binascii
import hmac
import json
import json.scanner
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_MARK = b"~"
_AAD = b"sensor-sso-agent/sessions/v1"
_TOKEN_AAD = b"sensor-sso-agent/sessions/v1/refresh-token"
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.JSONDecoder().decode
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # (value, end)
_a2b = binascii.a2b_base64


@dataclass(frozen=True, slots=True)
class TokenLine:
    """Seal a new refresh-token line for the session keyed ``key``."""

    key: bytes
    token: str

    def __repr__(self) -> str:  # never the token
        return "TokenLine(...)"


@dataclass(frozen=True, slots=True)
class CopiedLine:
    """Write again, byte for byte, the token line that starts at ``at`` in the journal."""

    at: int


Record = dict[str, Any] | list[Any]  # a list: this version; a dict: earlier ones
Item = Record | TokenLine | CopiedLine


class Sealer:
    """Seals and opens lines with the journal's key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._derived = hmac.new(key, b"sensor-sso-agent/derived/v1", "sha256").digest()

    def _seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return binascii.b2a_base64(nonce + self._aead.encrypt(nonce, plain, aad), newline=True)

    def _open(self, data: bytes | memoryview, aad: bytes) -> bytes | None:
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
            return self._aead.decrypt(raw[:12], raw[12:], aad)
        except (ValueError, InvalidTag, binascii.Error):
            return None

    def seal(self, record: Record) -> bytes:
        return self._seal(_dumps(record).encode(), _AAD)

    def seal_token(self, key: bytes, token: str) -> bytes:
        return TOKEN_MARK + self._seal(_dumps({"key": key.hex(), "refresh_token": token})
                                       .encode(), _TOKEN_AAD)

    def open(self, line: bytes) -> Record | None:
        """A record line (with its newline) as its record; None when it is not one of ours.
        (Called once per record at every start: kept to the fewest Python steps. The base64
        is read leniently — the newline skipped —, since the GCM tag decides what is ours.)"""
        try:
            raw = _a2b(line)
            text = self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()
            record, end = _scan(text, 0)
        except (ValueError, InvalidTag, UnicodeDecodeError, StopIteration):
            return None
        return record if end == len(text) and isinstance(record, list | dict) else None

    def open_token(self, line: bytes, key: bytes) -> str | None:
        """The refresh token of a token line, if it is one sealed for ``key``."""
        if not line.startswith(TOKEN_MARK) or not line.endswith(b"\n"):
            return None
        plain = self._open(memoryview(line)[1:-1], _TOKEN_AAD)
        if plain is None:
            return None
        try:
            data = _loads(plain.decode())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key.hex():
            return None
        token = data.get("refresh_token")
        return token if isinstance(token, str) and token else None

    def derive(self, label: bytes) -> bytes:
        """A secret for another purpose, bound to this key (the store's CSRF secret)."""
        return hmac.new(self._derived, label, "sha256").digest()
