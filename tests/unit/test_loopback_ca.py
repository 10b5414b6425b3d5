"""The loopback CA: private keys 0600, 127.0.0.1 leaves only, and a real TLS handshake on loopback with them."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox.loopback_ca import LoopbackCA, thumbprint, trusting


def test_keys_are_private_and_the_ca_is_reused(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "tls")
    issued = ca.issue("agent one/../x", client=True)
    for key in (ca.key_file, issued.key_file):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert issued.key_file.parent == tmp_path / "tls" / "clients"  # the name cannot climb out of it
    again = LoopbackCA(tmp_path / "tls")
    assert again.certificate == ca.certificate


def test_leaves_name_loopback_only_and_carry_their_thumbprint(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "tls")
    issued = ca.issue("server", client=False)
    certificate = x509.load_pem_x509_certificate(issued.certificate_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == []
    assert issued.thumbprint == thumbprint(certificate.public_bytes(serialization.Encoding.DER))
    certificate.verify_directly_issued_by(ca.certificate)
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> bytes | None:
    """One TLS handshake on loopback; the DER of the client certificate the server saw, or None."""
    seen: list[bytes | None] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                seen.append(tls.getpeercert(binary_form=True))
                tls.sendall(b"x")

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(1) == b"x"
        thread.join()
    return seen[0]


def test_a_client_certificate_of_the_ca_is_seen_by_the_server(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "tls")
    server = ca.issue("mcp", client=False)
    agent = ca.issue("agent", client=True)
    der = _handshake(ca.server_context(server), agent.client_context())
    assert der is not None and thumbprint(der) == agent.thumbprint
    anonymous = trusting(ca.certificate_file)
    assert _handshake(ca.server_context(server), anonymous) is None  # requested, not required


def test_two_certificates_of_one_name_are_two_pairs_of_files(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "tls")
    first, second = ca.issue("agent", client=True), ca.issue("agent", client=True)
    assert first.certificate_file != second.certificate_file and first.key_file != second.key_file
    assert first.thumbprint == thumbprint(
        x509.load_pem_x509_certificate(first.certificate_file.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
