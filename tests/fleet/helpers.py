"""Shared bits of the fleet tests: config edits for the harness and a client certificate."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.harness import CLIENT, ROLE_GROUPS

OTHER_GROUP = "dddddddd-0000-4000-8000-000000000009"


def fleet(sensor: dict[str, str], *blocks: dict[str, Any]) -> Any:
    """A harness ``config=`` that turns the single-setting form into [sensor] + [[setting]]."""
    def edit(data: dict[str, Any]) -> None:
        data["entra"].pop("client_id")
        data.pop("roles")
        data["sensor"] = sensor
        data["setting"] = [dict(b) for b in blocks]
    return edit


def block(name: str, roles: Mapping[str, Sequence[str]] | None = None,
          **scope: Any) -> dict[str, Any]:
    entra = scope.pop("entra", {})
    return {"name": name, "entra": {"client_id": CLIENT, **entra},
            "roles": roles or {k: list(v) for k, v in ROLE_GROUPS.items()}, **scope}


def client_certificate(directory: Path) -> tuple[Path, bytes]:
    """(PEM file with private key and certificate, the certificate PEM to register)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-sso-agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = directory / "client-cert.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert_pem)
    path.chmod(0o600)
    return path, cert_pem
