"""A throwaway certificate authority and a loopback server certificate for the dev IdP."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes of the CA certificate, the server certificate and its private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca_key_pem: bytes = b""  # kept only where the CA must outlive the process (persist.py)

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` (0600); return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        ca, cert, key = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
        ca.write_bytes(self.ca_pem)
        cert.write_bytes(self.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)
        return ca, cert, key

    def server_context(self, cert_file: Path, key_file: Path) -> ssl.SSLContext:
        """A TLS server context presenting the server certificate (TLS 1.2+)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts only the throwaway CA."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sensor-sso-agent dev IdP"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


CertificateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


Lifetime = tuple[datetime.datetime, datetime.datetime]  # not before, not after


def certificate(subject: x509.Name, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
                issuer: x509.Name, signer: CertificateKey, lifetime: Lifetime,
                extensions: Sequence[tuple[x509.ExtensionType, bool]] = ()) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signer`` (SHA-256); ``extensions`` are
    ``(extension, critical)`` pairs."""
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(lifetime[0]).not_valid_after(lifetime[1]))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def make_tls_material(hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      ca: TlsMaterial | None = None,
                      validity: datetime.timedelta = _VALIDITY) -> TlsMaterial:
    """Create a server certificate for ``hosts`` (IP addresses become IP SANs), issued by
    ``ca`` (its ``ca_pem`` and ``ca_key_pem``) or by a new CA."""
    now = datetime.datetime.now(datetime.UTC)
    lifetime = (now - datetime.timedelta(hours=1), now + validity)
    ca_name = _name("sensor-sso-agent dev IdP throwaway CA")
    if ca is not None and ca.ca_key_pem:
        loaded = serialization.load_pem_private_key(ca.ca_key_pem, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        ca_key = loaded
        ca_cert = x509.load_pem_x509_certificate(ca.ca_pem)
        ca_name = ca_cert.subject
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = certificate(ca_name, ca_key.public_key(), ca_name, ca_key, lifetime, [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(ca=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = certificate(_name(hosts[0]), key.public_key(), ca_name, ca_key, lifetime, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(ca=False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName(sans), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False),
    ])
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca_key_pem=ca_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()),
    )
