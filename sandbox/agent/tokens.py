"""Agent-side tokens: an agent's credential, and the client-credentials grant that turns it into a token."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT


@dataclass(frozen=True)
class ClientSecretCredential:
    client_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class PrivateKeyCredential:
    client_id: str
    private_jwk: dict[str, Any] = field(repr=False)

    @property
    def kid(self) -> str:
        return str(self.private_jwk["kid"])

    @property
    def alg(self) -> str:
        return str(self.private_jwk.get("alg", "RS256"))


Credential = ClientSecretCredential | PrivateKeyCredential


class TokenRefused(Exception):
    """The token endpoint said no: its status and OAuth error code."""

    def __init__(self, status: int | None, error: str, description: str = "") -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"token request refused ({status}): {error} {description}".strip())


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: float
    scope: str

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())

    def claims(self) -> dict[str, Any]:
        """The payload, unverified: for the agent's own bookkeeping and for evidence, never for trust."""
        payload = self.access_token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def fresh(self, margin: float = 5.0) -> bool:
        return time.time() < self.expires_at - margin


async def fetch_token(
    token_url: str,
    credential: Credential,
    *,
    scope: str | None = None,
    timeout: float = 10.0,
) -> Token:
    """A client-credentials token for ``credential``, or TokenRefused with the endpoint's reason."""
    if isinstance(credential, PrivateKeyCredential):
        client = AsyncOAuth2Client(
            credential.client_id, credential.private_jwk, token_endpoint_auth_method="private_key_jwt", timeout=timeout
        )
        client.register_client_auth_method(
            PrivateKeyJWT(token_url, headers={"kid": credential.kid}, alg=credential.alg)
        )
    else:
        client = AsyncOAuth2Client(
            credential.client_id,
            credential.secret,
            token_endpoint_auth_method="client_secret_post",
            timeout=timeout,
        )
    async with client:
        try:
            issued = await client.fetch_token(token_url, grant_type="client_credentials", scope=scope)
        except OAuthError as exc:
            raise TokenRefused(_status(exc), exc.error or "error", exc.description or "") from None
        except httpx.HTTPError as exc:
            raise TokenRefused(None, "unreachable", str(exc)) from None
    return Token(
        issued["access_token"],
        float(issued.get("expires_at") or time.time() + issued["expires_in"]),
        issued.get("scope", ""),
    )


def _status(error: OAuthError) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)
