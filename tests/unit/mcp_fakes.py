"""In-process fakes for the MCP server's unit tests: an issuer answering through httpx.MockTransport, a clock."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "http://127.0.0.1:1/realms/acme"
AUDIENCE = "http://127.0.0.1:2/mcp"


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeIssuer:
    """Discovery, JWKS and introspection of one issuer, served to an httpx client without a network."""

    issuer: str = ISSUER
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"}))
    up: bool = True
    requests: list[httpx.Request] = field(default_factory=list)
    introspection: dict[str, Any] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.up:
            raise httpx.ConnectError("refused", request=request)
        path = request.url.path
        if path == "/.well-known/oauth-authorization-server/realms/acme":
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "jwks_uri": "http://127.0.0.1:1/jwks",
                    "introspection_endpoint": "http://127.0.0.1:1/introspect",
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if path == "/introspect" and self.introspection is not None:
            return httpx.Response(200, json=self.introspection)
        return httpx.Response(404)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "service-account-1",
            "azp": "agent-1",
            "client_id": "agent-1",
            "scope": "mcp:tool:invoices.read",
            "iat": now,
            "exp": now + 60,
            "typ": "Bearer",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, header: dict[str, Any] | None = None, key: Any = None, **changes: Any) -> str:
        return jwt.encode(header or {"alg": "RS256", "kid": "k1"}, self.claims(**changes), key or self.key)


def b64(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(header)}.{b64(claims)}.{b64(signature) if signature else ''}"


@contextlib.contextmanager
def served_app(tmp_path: Path, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Iterator[Any]:
    """The reference server's whole app in-process (jwt mode, trusting ``issuer``), behind a starlette TestClient."""
    from starlette.testclient import TestClient

    from sandbox.config import load_settings
    from sandbox.mcp_server import app as app_module
    from sandbox.mcp_server.options import ServerOptions

    monkeypatch.setattr(app_module, "http_client", issuer.client)
    options = ServerOptions.standalone(
        load_settings(state_dir=tmp_path, **settings), issuers=[issuer.issuer], port=2, mode="jwt", broker_url=None
    )
    assert options.canonical_url == AUDIENCE
    with TestClient(app_module.build_app(options), base_url="http://127.0.0.1:2") as client:
        yield client
