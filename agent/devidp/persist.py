"""What ``sensor-sso-agent devidp`` keeps in its state directory across restarts.

* ``ca.pem`` (0644: the agent's ``ca_bundle`` reads it as the service user) and
  ``ca-key.pem`` (0600): the CA stays, so the agent keeps trusting the provider; the server
  certificate (``server.pem``, ``server-key.pem``) is issued anew at each start for the
  names given. A CA within a day of its end is replaced (``load_tls`` says so).
* ``signing-key.pem`` (0600) and ``signing-cert.pem``: the token signing key, so ID tokens
  issued before a restart still verify and the ``kid`` stays.
* ``directory.json`` (0600): refresh tokens, revoked sign-in sessions and the directory
  changes (blocked users, group changes), written atomically when they change
  (``Snapshots``), so the agent's sessions keep re-validating after a restart.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .certs import TlsMaterial, make_tls_material
from .keys import SigningKey, b64url
from .state import IssuedRefreshToken, ProviderState

CA_VALIDITY = datetime.timedelta(days=90)
RECORDS = "directory.json"


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def load_tls(directory: Path, hosts: tuple[str, ...]) -> tuple[TlsMaterial, bool]:
    """The kept CA (or a new one: second value True) and a new server certificate for
    ``hosts``, written to ``directory``."""
    ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
    kept: TlsMaterial | None = None
    if ca_file.is_file() and ca_key_file.is_file():
        ca_pem = ca_file.read_bytes()
        ends = x509.load_pem_x509_certificate(ca_pem).not_valid_after_utc
        if ends - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=1):
            kept = TlsMaterial(ca_pem, b"", b"", ca_key_file.read_bytes())
    material = make_tls_material(hosts, ca=kept, validity=CA_VALIDITY)
    if kept is None:
        _write(ca_key_file, material.ca_key_pem, 0o600)
        _write(ca_file, material.ca_pem, 0o644)
    return material, kept is None


def load_signing_key(directory: Path) -> SigningKey:
    """The kept token signing key, or a new one (then kept)."""
    key_file, cert_file = directory / "signing-key.pem", directory / "signing-cert.pem"
    if key_file.is_file() and cert_file.is_file():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(
                serialization.Encoding.DER)
            return SigningKey(key, der, b64url(hashlib.sha1(der).digest()))  # noqa: S324 - x5t is SHA-1
    new = SigningKey.generate()
    _write(key_file, new.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    cert = x509.load_der_x509_certificate(new.cert_der)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return new


def load_password(directory: Path) -> str:
    """The users' password for this state directory: made once, random, kept (0600)."""
    path = directory / "password"
    if path.is_file():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    _write(path, password.encode() + b"\n", 0o600)
    return password


def records(state: ProviderState) -> dict[str, Any]:
    """What must outlive the process, as JSON."""
    return {
        "refresh_tokens": {token: dataclasses.asdict(item)
                           for token, item in state.refresh_tokens.items()},
        "sessions_revoked_at": state.sessions_revoked_at,
        "users": {u.oid: {"disabled": u.disabled, "groups": u.groups, "app_roles": u.app_roles}
                  for u in state.users},
    }


def restore(state: ProviderState, directory: Path) -> int:
    """Load ``directory.json`` into ``state``; returns how many refresh tokens it held."""
    path = directory / RECORDS
    if not path.is_file():
        return 0
    data = json.loads(path.read_text())
    state.refresh_tokens.update({token: IssuedRefreshToken(**item)
                                 for token, item in data.get("refresh_tokens", {}).items()})
    state.sessions_revoked_at.update(data.get("sessions_revoked_at", {}))
    users = data.get("users", {})
    for user in state.users:
        if user.oid in users:
            user.disabled = bool(users[user.oid]["disabled"])
            user.groups = list(users[user.oid]["groups"])
            user.app_roles = list(users[user.oid].get("app_roles", user.app_roles))
    return len(state.refresh_tokens)


class Snapshots:
    """Writes ``directory.json`` whenever ``records(state)`` changed since the last write."""

    def __init__(self, state: ProviderState, directory: Path) -> None:
        self.state, self.path = state, directory / RECORDS
        self._last = b""

    def save(self) -> bool:
        data = json.dumps(records(self.state), sort_keys=True).encode()
        if data == self._last:
            return False
        _write(self.path, data, 0o600)
        self._last = data
        return True
