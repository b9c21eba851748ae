"""RSA signing keys, the JWKS document and hand-built (possibly broken on purpose) JWS."""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .certs import certificate

SigningMode = Literal["normal", "bad_signature", "alg_none", "hs256_public_key", "foreign_key",
                      "unknown_kid_in_jwks_later"]
SIGNING_MODES: frozenset[str] = frozenset(get_args(SigningMode))


class _Sentinel(enum.Enum):
    DELETE = "DELETE"

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Sentinel.DELETE
"""Use as a value in ``token_tweaks["claims"]`` / ``["header"]`` to remove that entry."""


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    """An RS256 key with a self-signed certificate; ``kid`` = ``x5t`` like Entra's keys."""

    private_key: rsa.RSAPrivateKey
    cert_der: bytes
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev IdP token signing")])
        now = datetime.datetime.now(datetime.UTC)
        lifetime = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=365))
        cert = certificate(name, key.public_key(), name, key, lifetime)
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(key, der, b64url(hashlib.sha1(der).digest()))  # noqa: S324 (x5t is SHA-1)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, issuer: str, *, with_kid: bool = True) -> dict[str, Any]:
        """The public JWK as Entra publishes it (kty, use, kid, x5t, n, e, x5c, issuer)."""
        numbers = self.public_key.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "use": "sig"}
        if with_kid:
            jwk["kid"] = self.kid
        jwk.update(
            x5t=self.kid,
            n=_uint(numbers.n),
            e=_uint(numbers.e),
            x5c=[base64.b64encode(self.cert_der).decode("ascii")],
            issuer=issuer,
        )
        return jwk

    def sign_rs256(self, signing_input: bytes) -> bytes:
        return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def merge(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with ``changes``; a ``DELETE`` value removes the key."""
    out = dict(base)
    for key, value in (changes or {}).items():
        if value is DELETE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _encode(part: dict[str, Any]) -> str:
    return b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))


def build_jws(
    claims: dict[str, Any],
    key: SigningKey,
    *,
    mode: SigningMode = "normal",
    header_changes: dict[str, Any] | None = None,
    with_kid: bool = True,
    foreign_key: SigningKey | None = None,
) -> str:
    """A compact JWS over ``claims``, honest (``mode="normal"``) or broken as named.

    Modes: ``bad_signature`` (valid signature with bytes flipped), ``alg_none`` (alg none,
    empty signature), ``hs256_public_key`` (HMAC-SHA256 keyed with the public key PEM, the
    classic algorithm-confusion attack), ``foreign_key`` (RS256 by ``foreign_key``, whose kid
    is not in the JWKS). ``header_changes`` are applied last, before signing.
    """
    if mode not in SIGNING_MODES:
        raise ValueError(f"unknown signing mode {mode!r}; one of {sorted(SIGNING_MODES)}")
    signer = key
    header: dict[str, Any] = {"typ": "JWT", "alg": "RS256"}
    if mode == "foreign_key":
        if foreign_key is None:
            raise ValueError("foreign_key mode needs a foreign_key")
        signer = foreign_key
    if with_kid:
        header["kid"] = signer.kid
    if mode == "alg_none":
        header["alg"] = "none"
    elif mode == "hs256_public_key":
        header["alg"] = "HS256"
    header = merge(header, header_changes)
    signing_input = f"{_encode(header)}.{_encode(claims)}".encode("ascii")
    if mode == "alg_none":
        signature = b""
    elif mode == "hs256_public_key":
        signature = hmac.new(key.public_pem, signing_input, hashlib.sha256).digest()
    else:
        signature = signer.sign_rs256(signing_input)
        if mode == "bad_signature":
            flipped = bytes([signature[0] ^ 0xFF]) + signature[1:-1]
            signature = flipped + bytes([signature[-1] ^ 0x01])
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"
