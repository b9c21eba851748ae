"""Web-platform client credentials: a client secret from a file, or a certificate.

A certificate credential is a PEM file holding the private key (and usually the certificate)
plus the certificate's SHA-1 thumbprint as shown in the app registration (taken from the
certificate when the file carries it). MSAL builds the private-key JWT client assertion from
them. Nothing here is ever logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..errors import AgentError


class CredentialProblem(AgentError, ValueError):
    """The credential file cannot be used; the message names the fix, never the secret."""


def load_certificate(path: Path, thumbprint: str | None) -> dict[str, Any]:
    """MSAL's ``client_credential`` for a certificate: ``{"private_key", "thumbprint"}``."""
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(_block(pem, b"PRIVATE KEY"), password=None)
    except (ValueError, TypeError):
        raise CredentialProblem("holds no unencrypted PEM private key") from None
    if thumbprint is not None:
        clean = thumbprint.replace(":", "").strip().lower()
        if not re.fullmatch(r"[0-9a-f]{40}", clean):
            raise CredentialProblem("client_certificate_thumbprint must be the certificate's "
                                    "SHA-1 thumbprint (40 hex digits)")
        return {"private_key": _pem_key(key), "thumbprint": clean.upper()}
    try:
        cert = x509.load_pem_x509_certificate(_block(pem, b"CERTIFICATE"))
    except ValueError:
        raise CredentialProblem("holds no certificate: add it to the file or set "
                                "client_certificate_thumbprint") from None
    return {"private_key": _pem_key(key),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper()}  # noqa: S303 - Entra's x5t


def load_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8", errors="strict").strip()
    if not secret:
        raise CredentialProblem("the client secret file is empty")
    return secret


def client_credential(settings: Any) -> str | dict[str, Any] | None:
    """What ``msal.ConfidentialClientApplication`` takes for ``settings`` (None for SPA)."""
    if settings.platform != "web":
        return None
    if settings.client_certificate_file is not None:
        return load_certificate(settings.client_certificate_file,
                                settings.client_certificate_thumbprint)
    if settings.client_secret_file is not None:
        return load_secret(settings.client_secret_file)
    raise CredentialProblem("a Web platform app needs client_secret_file or "
                            "client_certificate_file")


def _block(pem: bytes, kind: bytes) -> bytes:
    match = re.search(rb"-----BEGIN ([A-Z ]*)" + kind + rb"-----.*?-----END \1" + kind +
                      rb"-----", pem, re.S)
    if match is None:
        raise ValueError("no such PEM block")
    return match.group(0)


def _pem_key(key: Any) -> str:
    return str(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode("ascii"))
