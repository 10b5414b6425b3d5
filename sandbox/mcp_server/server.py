"""Run one MCP server instance with uvicorn on loopback until it is told to stop: its HTTP listener and,
when it has one, its TLS listener (client certificates requested, :mod:`sandbox.mcp_server.tls`)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from typing import Any

import uvicorn

from sandbox.http_limits import MAX_HEADER_BYTES
from sandbox.log import configure_logging
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.tls import ClientCertificateProtocol, TlsListener, open_listener


def _config(app: Any, options: ServerOptions, port: int, **tls: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=options.host,
        port=port,
        log_config=None,
        access_log=False,  # sandbox.mcp_server.app.AccessLog logs each request, without its query string
        proxy_headers=False,  # loopback only: no proxy's X-Forwarded-* is ever believed
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,  # the parser's own bound; HeaderSizeLimit is exact
        timeout_graceful_shutdown=5,
        **tls,
    )


def _tls_config(app: Any, options: ServerOptions, listener: TlsListener) -> uvicorn.Config:
    return _config(
        app,
        options,
        listener.socket.getsockname()[1],
        http=ClientCertificateProtocol,
        ssl_certfile=str(listener.certificate.certificate_file),
        ssl_keyfile=str(listener.certificate.key_file),
        ssl_ca_certs=str(listener.certificate.ca_file),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,  # requested, not required: a caller without one is refused per token
        lifespan="off",  # the plain server runs the app's lifespan, once
    )


async def _serve_both(plain: uvicorn.Server, tls: uvicorn.Server, listener: TlsListener) -> None:
    """Both listeners; a stop signal stops both (the TLS server passes the signal on to the plain one)."""

    async def follow() -> None:
        while not plain.should_exit and not tls.should_exit:
            await asyncio.sleep(0.2)
        plain.should_exit = tls.should_exit = True

    await asyncio.gather(plain.serve(), tls.serve(sockets=[listener.socket]), follow())


def serve(options: ServerOptions) -> None:
    configure_logging()
    listener = None
    if options.tls_port is not None and options.tls_dir is not None:
        listener = open_listener(options.host, options.tls_port, options.tls_dir)
    if listener is None:  # its metadata then declares no certificate-bound tokens
        options = dataclasses.replace(options, tls_port=None, tls_dir=None)
    app = build_app(options)
    plain = uvicorn.Server(_config(app, options, options.port))
    if listener is None:
        plain.run()
        return
    tls = uvicorn.Server(_tls_config(app, options, listener))
    asyncio.run(_serve_both(plain, tls, listener))
