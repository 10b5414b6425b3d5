"""The reference server's optional TLS listener: it requests a client certificate (of the sandbox's loopback
CA) and hands it to the app, so that a certificate-bound token (RFC 8705) is served only to its holder.

uvicorn does not pass the peer certificate to the app: the protocol below reads it from the connection's
``ssl_object`` and fills the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``) of every
request on that connection, which :func:`sandbox.mcp_server.app.client_certificate` reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from sandbox.errors import SandboxError
from sandbox.loopback_ca import IssuedCertificate, LoopbackCA

log = logging.getLogger("sandbox.mcp_server.tls")

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI TLS extension of one connection: its client certificate (PEM), none when it presented none."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }


def with_tls_extension(app: Asgi, extension: dict[str, Any]) -> Asgi:
    """``app``, each of whose HTTP requests carries ``extension`` as its scope's TLS extension."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": extension}}
        await app(scope, receive, send)

    return wrapped


class ClientCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, giving the app the client certificate of each TLS connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, tls_extension(transport.get_extra_info("ssl_object")))


@dataclass(frozen=True)
class TlsListener:
    """Where the TLS listener is, with the server certificate it presents and the CA whose clients it trusts."""

    socket: socket.socket
    certificate: IssuedCertificate


def open_listener(host: str, port: int, tls_dir: Path) -> TlsListener | None:
    """The listening socket on ``host:port`` and a certificate of the loopback CA; None, with one logged line,
    when the port cannot be opened (the plain HTTP listener serves on regardless)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen()  # held from now on: a port free at the bind cannot be taken before uvicorn serves
    except OSError as exc:
        listening.close()
        log.warning(
            "no TLS listener: its port cannot be opened; certificate-bound tokens cannot be used here",
            extra={"port": port, "cause": exc.strerror or str(exc), "fix": "free the port or set its setting"},
        )
        return None
    try:
        certificate = LoopbackCA(tls_dir).issue(f"mcp-server-{listening.getsockname()[1]}", client=False)
    except (OSError, SandboxError) as exc:
        listening.close()
        log.warning(
            "no TLS listener: the loopback CA cannot issue its certificate; certificate-bound tokens cannot be used",
            extra={"directory": str(tls_dir), "cause": str(exc), "fix": "make the state directory writable"},
        )
        return None
    return TlsListener(listening, certificate)
