"""The sandbox's own certificate authority, for TLS on loopback only (RFC 8705 certificate-bound tokens).

The CA lives in a directory of the stack's state: its key and every key it issues are written 0600. It signs
server certificates (Keycloak's HTTPS port, the reference MCP server's TLS listener) and one client
certificate per mTLS agent. Every certificate it issues names 127.0.0.1 and nothing else, and it can sign
nothing but such leaves (path length 0). The keys are EC P-256.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from filelock import FileLock

from sandbox.errors import SandboxError

LOOPBACK_IP = "127.0.0.1"
CA_FILE = "ca.pem"  # the CA's certificate in its directory: what a TLS client of the sandbox trusts
CA_NAME = "mcp-sandbox loopback CA"
CA_DAYS = 365
LEAF_DAYS = 30
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def thumbprint(der: bytes) -> str:
    """``x5t#S256`` of a DER certificate (RFC 8705 §3.1): base64url of its SHA-256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner may read, created so (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA issued and its private key, as PEM files; ``thumbprint`` is its ``x5t#S256``."""

    certificate_file: Path
    key_file: Path
    thumbprint: str
    ca_file: Path  # the CA that issued it: what its holder trusts

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts only the loopback CA and presents this certificate."""
        context = trusting(self.ca_file)
        context.load_cert_chain(str(self.certificate_file), str(self.key_file))
        return context


class LoopbackCA:
    """The CA in ``directory`` (made at the first use, then reused): it issues 127.0.0.1 certificates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.certificate_file = directory / CA_FILE
        self.key_file = directory / "ca.key"
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory / ".lock")):
            if not (self.certificate_file.exists() and self.key_file.exists()):
                self._create()
        try:
            self._key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
            self._certificate = x509.load_pem_x509_certificate(self.certificate_file.read_bytes())
        except (ValueError, TypeError) as exc:
            raise SandboxError(
                f"the loopback CA in {directory} cannot be read ({exc})", f"delete {directory} to make a new one"
            ) from None
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise SandboxError(f"the loopback CA key in {directory} is not an EC key", f"delete {directory}")

    def _create(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.NameConstraints(permitted_subtrees=[_loopback_subtree()], excluded_subtrees=None), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_file, _pem_key(key))
        self.certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    def issue(self, name: str, *, client: bool) -> IssuedCertificate:
        """A new leaf certificate for 127.0.0.1 named ``name``: a client certificate (an mTLS agent's) or a
        server one; written as ``<name>-<random>.pem`` and ``.key`` (0600) under ``clients/`` or ``servers/``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK_IP))]), critical=False
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        folder = self.directory / ("clients" if client else "servers")
        stem = f"{_SAFE_NAME.sub('_', name)}-{uuid.uuid4().hex[:8]}"  # two holders of one name never share files
        key_file, certificate_file = folder / f"{stem}.key", folder / f"{stem}.pem"
        _write_private(key_file, _pem_key(key))
        certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        der = certificate.public_bytes(serialization.Encoding.DER)
        return IssuedCertificate(certificate_file, key_file, thumbprint(der), self.certificate_file)

    def server_context(self, server: IssuedCertificate) -> ssl.SSLContext:
        """A TLS server context presenting ``server`` that requests (not requires) a client certificate of this CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.certificate_file))
        context.load_cert_chain(str(server.certificate_file), str(server.key_file))
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A TLS client context that trusts the loopback CA only, and presents no certificate."""
    return ssl.create_default_context(cafile=str(ca_file))


def _loopback_subtree() -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_network(f"{LOOPBACK_IP}/32"))
