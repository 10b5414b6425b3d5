"""MCP calls as an agent makes them, classified the way scenarios assert them: allowed, 401, 403, …

Raw Streamable HTTP (certify's prober), so the status and the challenge are visible. A session is opened
per server and principal and reused, as a client would; it is reopened when the server has forgotten it.
"""

from __future__ import annotations

import itertools
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.agent import mcp_http
from sandbox.agent.dpop import DPoPKey
from sandbox.loopback import KEEPALIVE
from sandbox.loopback_ca import IssuedCertificate, trusting


@dataclass(frozen=True)
class CallOutcome:
    outcome: str  # "allowed", "tool_error", or the HTTP status as text ("401", "403", …)
    status: int
    challenge: str | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)

    def evidence(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"outcome": self.outcome, "status": self.status}
        if self.challenge:
            shown["www-authenticate"] = self.challenge
        if self.result is not None:
            shown["result"] = _short(self.result)
        return shown


def _short(value: Any, limit: int = 600) -> Any:
    text = str(value)
    return value if len(text) <= limit else text[:limit] + "…"


def classify(response: httpx.Response) -> CallOutcome:
    challenge = response.headers.get("www-authenticate")
    if mcp_http.served(response):
        message = mcp_http.rpc_message(response) or {}
        result = message.get("result")
        structured = result.get("structuredContent") if isinstance(result, dict) else None
        outcome = "tool_error" if mcp_http.tool_error(response) else "allowed"
        return CallOutcome(outcome, response.status_code, challenge, structured or result)
    return CallOutcome(str(response.status_code), response.status_code, challenge)


class TransportFailed(Exception):
    """The request got no HTTP answer (connection refused, reset, timed out)."""


class McpCaller:
    """Sessions per (server, principal); safe to use from several threads (one lock per session key)."""

    def __init__(self, ca_file: Path | None = None) -> None:
        self.ca_file = ca_file  # the loopback CA: what a call to a TLS listener trusts
        self._sessions: dict[tuple[str, str], str | None] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._ids = itertools.count(1)

    def _client(self, source: str | None = None, certificate: IssuedCertificate | None = None) -> httpx.Client:
        """One connection pool per thread, source address and client certificate (httpx clients are not shared
        across threads).

        ``source``: the local address to call from (a network zone, such as 127.0.0.2); the system's choice if None.
        ``certificate``: the TLS client certificate every connection presents (RFC 8705); HTTPS URLs are trusted
        when their server's certificate is of the loopback CA, with or without one.
        """
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        key = (source, certificate.thumbprint if certificate is not None else None)
        client = clients.get(key)
        if client is None:
            verify: ssl.SSLContext | bool = True
            if certificate is not None:
                verify = certificate.client_context()
            elif self.ca_file is not None and self.ca_file.is_file():
                verify = trusting(self.ca_file)
            transport = httpx.HTTPTransport(local_address=source, verify=verify) if source else None
            client = clients[key] = httpx.Client(timeout=30, limits=KEEPALIVE, transport=transport, verify=verify)
            with self._guard:
                self._clients.append(client)
        return client

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _session(
        self,
        url: str,
        principal: str,
        token: str,
        dpop: DPoPKey | None,
        *,
        fresh: bool = False,
        source: str | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> str | httpx.Response | None:
        """The session id (None: a stateless server), or the refusal of ``initialize``."""
        key = (url, principal)
        with self._lock(key):
            if fresh or key not in self._sessions:
                client = self._client(source, certificate)
                response = mcp_http.post(url, mcp_http.INITIALIZE, token=token, client=client, dpop=dpop)
                if response.status_code != 200:
                    return response
                session = response.headers.get("mcp-session-id")
                mcp_http.post(url, mcp_http.INITIALIZED, token=token, session=session, client=client, dpop=dpop)
                self._sessions[key] = session
            return self._sessions[key]

    def send(
        self,
        url: str,
        principal: str,
        token: str,
        body: dict[str, Any],
        dpop: DPoPKey | None = None,
        source: str | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> httpx.Response:
        """One request as ``principal``; ``dpop``: the key the token is bound to (a proof goes with each request);
        ``source``: the address (a network zone) it goes from; ``certificate``: the TLS client certificate it
        presents (to a server's TLS listener)."""
        try:
            return self._send(url, principal, token, body, dpop, source, certificate)
        except httpx.TransportError as error:  # a call that got no answer is a failed call, said plainly
            raise TransportFailed(f"{type(error).__name__} on {body.get('method')} to {url}: {error}") from error

    def _send(
        self,
        url: str,
        principal: str,
        token: str,
        body: dict[str, Any],
        dpop: DPoPKey | None,
        source: str | None,
        certificate: IssuedCertificate | None = None,
    ) -> httpx.Response:
        session = self._session(url, principal, token, dpop, source=source, certificate=certificate)
        if isinstance(session, httpx.Response):
            return session
        client = self._client(source, certificate)
        response = mcp_http.post(url, body, token=token, session=session, client=client, dpop=dpop)
        if response.status_code == 404 and session is not None:  # the server forgot the session: start again
            session = self._session(url, principal, token, dpop, fresh=True, source=source, certificate=certificate)
            if isinstance(session, httpx.Response):
                return session
            response = mcp_http.post(url, body, token=token, session=session, client=client, dpop=dpop)
        return response

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A request with an id of its own: concurrent requests on one session must never share an id."""
        with self._guard:
            request_id = next(self._ids)
        return mcp_http.message(method, params, request_id)

    def call_tool(
        self,
        url: str,
        principal: str,
        token: str,
        tool: str,
        arguments: dict[str, Any],
        dpop: DPoPKey | None = None,
        source: str | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> CallOutcome:
        body = self._message("tools/call", {"name": tool, "arguments": arguments})
        return classify(self.send(url, principal, token, body, dpop, source, certificate))

    def list_tools(
        self,
        url: str,
        principal: str,
        token: str,
        dpop: DPoPKey | None = None,
        source: str | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> tuple[CallOutcome, set[str]]:
        response = self.send(url, principal, token, self._message("tools/list", {}), dpop, source, certificate)
        return classify(response), mcp_http.tool_names(response)

    def close(self) -> None:
        with self._guard:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
