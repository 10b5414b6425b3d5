"""Agent-side tokens: an agent's credential, the client-credentials grant that turns it into a token, and the
token exchange (RFC 8693, Keycloak's standard token exchange) by which a delegated agent acts for a user."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from sandbox.issued import remember_answer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


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


class TokenClient:
    """Client-credentials grants for one credential, over one kept-alive connection pool."""

    def __init__(self, token_url: str, credential: Credential, *, timeout: float = 10.0) -> None:
        self.token_url = token_url
        self.credential = credential
        if isinstance(credential, PrivateKeyCredential):
            self._client = AsyncOAuth2Client(
                credential.client_id,
                credential.private_jwk,
                token_endpoint_auth_method="private_key_jwt",
                timeout=timeout,
            )
            self._client.register_client_auth_method(
                PrivateKeyJWT(token_url, headers={"kid": credential.kid}, alg=credential.alg)
            )
        else:
            self._client = AsyncOAuth2Client(
                credential.client_id,
                credential.secret,
                token_endpoint_auth_method="client_secret_post",
                timeout=timeout,
            )

    async def fetch(self, scope: str | None = None, audience: list[str] | None = None) -> Token:
        """A new token, or TokenRefused with the endpoint's reason.

        ``audience`` names the resource servers the token is for, where the IdP grants ``aud`` only on request
        (Ory Hydra: of the client's allowed audience, those requested); Keycloak needs none.
        """
        extra = {"audience": " ".join(audience)} if audience else {}
        return await self._grant(grant_type="client_credentials", scope=scope, **extra)

    async def exchange(self, subject_token: str, scope: str | None = None) -> Token:
        """A token that acts for the user of ``subject_token`` (an access token whose ``aud`` names this agent).

        Keycloak gives it ``sub`` = the user, ``azp`` = this agent, and of the requested scopes (default: the
        agent's own) only those the user holds: at most the user's permissions. TokenRefused when it says no.
        """
        return await self._grant(
            grant_type=TOKEN_EXCHANGE,
            subject_token=subject_token,
            subject_token_type=ACCESS_TOKEN_TYPE,
            requested_token_type=ACCESS_TOKEN_TYPE,
            scope=scope,
        )

    async def _grant(self, **parameters: str | None) -> Token:
        try:
            issued = await self._client.fetch_token(self.token_url, **parameters)
        except OAuthError as exc:
            raise TokenRefused(_status(exc), exc.error or "error", exc.description or "") from None
        except httpx.HTTPError as exc:
            raise TokenRefused(None, "unreachable", str(exc)) from None
        remember_answer(issued)  # only when a test run keeps a registry of what it was issued
        expires_at = float(issued.get("expires_at") or time.time() + issued["expires_in"])
        return Token(issued["access_token"], expires_at, issued.get("scope", ""))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> TokenClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def fetch_token(
    token_url: str, credential: Credential, *, scope: str | None = None, audience: list[str] | None = None
) -> Token:
    """One token for ``credential`` (a client of its own; keep a TokenClient for many)."""
    async with TokenClient(token_url, credential) as client:
        return await client.fetch(scope, audience)


async def exchange_token(
    token_url: str, credential: Credential, subject_token: str, *, scope: str | None = None
) -> Token:
    """One token that acts for the user of ``subject_token`` (see :meth:`TokenClient.exchange`)."""
    async with TokenClient(token_url, credential) as client:
        return await client.exchange(subject_token, scope)


def _status(error: OAuthError) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)
