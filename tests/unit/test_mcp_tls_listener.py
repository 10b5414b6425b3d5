"""The MCP server's TLS listener hands each request the client certificate of its connection (the ASGI TLS
extension uvicorn leaves empty), which decides whether a certificate-bound token is served."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sandbox.loopback_ca import LoopbackCA, trusting
from sandbox.mcp_server.app import client_certificate
from sandbox.mcp_server.binding import BindingChecker, BindingRefused, Presented
from sandbox.mcp_server.principal import Confirmation, Principal
from sandbox.mcp_server.tls import ClientCertificateProtocol, open_listener

TOKEN = "a.b.c"


async def echo_certificate(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the x5t#S256 the server read off the connection (empty without a certificate)."""
    body = (client_certificate(scope) or "").encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


async def _seen(tmp_path: Path, clients: list[ssl.SSLContext]) -> list[str]:
    listener = open_listener("127.0.0.1", 0, tmp_path / "tls")
    assert listener is not None
    port = listener.socket.getsockname()[1]
    config = uvicorn.Config(
        echo_certificate,
        http=ClientCertificateProtocol,
        ssl_certfile=str(listener.certificate.certificate_file),
        ssl_keyfile=str(listener.certificate.key_file),
        ssl_ca_certs=str(listener.certificate.ca_file),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener.socket]))
    while not server.started:
        await asyncio.sleep(0.01)
    seen = []
    for context in clients:
        async with httpx.AsyncClient(verify=context, trust_env=False) as client:
            seen.append((await client.get(f"https://127.0.0.1:{port}/mcp")).text)
    server.should_exit = True
    await serving
    return seen


async def test_the_listener_gives_the_app_the_connections_client_certificate(tmp_path: Path) -> None:
    ca = LoopbackCA(tmp_path / "tls")
    holder, other = ca.issue("holder", client=True), ca.issue("other", client=True)
    seen = await _seen(tmp_path, [holder.client_context(), other.client_context(), trusting(ca.certificate_file)])
    assert seen == [holder.thumbprint, other.thumbprint, ""]
    # ... and only the holder's connection is served a token bound to the holder's certificate.
    bound = Principal(
        "http://127.0.0.1:1/realms/t", "agent", "agent", frozenset(), 0, 0, "fp", Confirmation(x5t=holder.thumbprint)
    )
    BindingChecker().check(bound, TOKEN, Presented("Bearer", (), seen[0]))
    for thumbprint in seen[1:]:
        try:
            BindingChecker().check(bound, TOKEN, Presented("Bearer", (), thumbprint or None))
        except BindingRefused as refused:
            assert (refused.scheme, refused.error) == ("Bearer", "invalid_token")
        else:
            raise AssertionError(f"a connection with certificate {thumbprint!r} was served the holder's token")


def test_a_port_that_cannot_be_opened_means_no_listener(tmp_path: Path) -> None:
    first = open_listener("127.0.0.1", 0, tmp_path / "tls")
    assert first is not None
    try:
        assert open_listener("127.0.0.1", first.socket.getsockname()[1], tmp_path / "tls") is None
    finally:
        first.socket.close()


def test_a_state_directory_it_cannot_write_means_no_listener(tmp_path: Path) -> None:
    (tmp_path / "tls").write_text("a file where the CA's directory would be")
    assert open_listener("127.0.0.1", 0, tmp_path / "tls") is None
