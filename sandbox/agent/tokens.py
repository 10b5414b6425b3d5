"""Agent-side tokens: an agent's credential, the client-credentials grant that turns it into a token, and the
token exchange (RFC 8693, Keycloak's standard token exchange) by which a delegated agent acts for a user.

The client authenticates the way the authorization server says it can (:mod:`sandbox.agent.client_auth`).
An answer of the endpoint that says no is :class:`TokenRefused` (its status and OAuth error); an endpoint
that cannot be reached, or answers something other than OAuth, is :class:`TokenEndpointUnavailable`:
an outage never reads as a refusal.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.agent.client_auth import (
    ClientSecretCredential,
    Credential,
    PrivateKeyCredential,
    authenticate,
    choose_method,
)
from sandbox.agent.dpop import DPoPKey
from sandbox.idp.realm import TOKEN_PATH as KEYCLOAK_TOKEN_PATH
from sandbox.issued import remember_answer
from sandbox.loopback_ca import IssuedCertificate

__all__ = [
    "ClientSecretCredential",
    "Credential",
    "PrivateKeyCredential",
    "Token",
    "TokenClient",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRefused",
    "exchange_token",
    "fetch_token",
]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEFAULT_LIFETIME = 60  # seconds a token without expires_in is taken to live


class TokenError(Exception):
    """No token: either refused or unavailable."""


class TokenRefused(TokenError):
    """The token endpoint said no: its HTTP status and OAuth error code (RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"token request refused ({status} {error}){': ' + description if description else ''}")


class TokenEndpointUnavailable(TokenError):
    """The token endpoint could not be reached, or answered something that is not OAuth (an outage, a proxy)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"the token endpoint {url} is unavailable: {reason}")


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: float
    scope: str
    token_type: str = "Bearer"  # "DPoP" when the token is bound to the agent's DPoP key (RFC 9449 §5)

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
    """Client-credentials grants for one credential, over one kept-alive connection pool.

    ``issuer`` is the authorization server's issuer (the ``aud`` of a key's assertions); unknown, it is the
    Keycloak realm the token URL belongs to, else the token URL. ``auth_methods`` is the server's
    ``token_endpoint_auth_methods_supported`` (None when it says nothing: ``client_secret_basic``). ``http``:
    an HTTP client of the caller's (closed with this one). ``dpop``: the agent's DPoP key; each request then
    carries a proof made with it, and the token is bound to it (RFC 9449). ``certificate``: the agent's TLS client
    certificate; it is presented on every connection (the token URL is then an HTTPS one of the loopback CA), and
    the IdP binds the token to it (RFC 8705). ``source``: the local address to call from (a network zone on
    loopback, such as 127.0.0.2); the system's choice when None.
    """

    def __init__(
        self,
        token_url: str,
        credential: Credential,
        *,
        issuer: str | None = None,
        auth_methods: Sequence[str] | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        dpop: DPoPKey | None = None,
        source: str | None = None,
        audience: list[str] | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> None:
        self.token_url = token_url
        self.credential = credential
        self.dpop = dpop
        self.audience = audience  # asked for on every fetch that names none (an IdP that grants aud on request)
        self.issuer = issuer or _issuer_of(token_url)
        self.method = choose_method(credential, auth_methods)
        verify: ssl.SSLContext | bool = certificate.client_context() if certificate is not None else True
        transport = httpx.AsyncHTTPTransport(local_address=source, verify=verify) if source else None
        self._http = http or httpx.AsyncClient(timeout=timeout, trust_env=False, transport=transport, verify=verify)

    async def fetch(
        self, scope: str | None = None, audience: list[str] | None = None, *, resource: str | None = None
    ) -> Token:
        """A new token, or TokenRefused / TokenEndpointUnavailable.

        ``resource`` names the server the token is for (RFC 8707; Keycloak). ``audience`` names the resource
        servers where the IdP grants ``aud`` only on request (Ory Hydra: of the client's allowed audience, those
        requested); Keycloak needs none.
        """
        return await self._grant(
            grant_type="client_credentials",
            scope=scope,
            resource=resource,
            audience=" ".join(audience) if audience else (" ".join(self.audience) if self.audience else None),
        )

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
        response = await self._post(parameters)
        answer = _json(response)
        nonce = response.headers.get("dpop-nonce")
        if self.dpop is not None and answer.get("error") == "use_dpop_nonce" and nonce:
            response = await self._post(parameters, nonce)  # RFC 9449 §8: once, with the nonce the server gave
            answer = _json(response)
        if response.status_code == 200 and isinstance(answer.get("access_token"), str):
            remember_answer(answer)  # only when a test run keeps a registry of what it was issued
            lifetime = answer.get("expires_in")
            expires_at = time.time() + (float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME)
            token_type = str(answer.get("token_type") or "Bearer")  # an AS without DPoP answers Bearer
            return Token(answer["access_token"], expires_at, str(answer.get("scope") or ""), token_type)
        if 400 <= response.status_code < 500 and isinstance(answer.get("error"), str):
            raise TokenRefused(response.status_code, answer["error"], str(answer.get("error_description") or ""))
        raise TokenEndpointUnavailable(
            self.token_url, f"HTTP {response.status_code} without an OAuth answer", response.status_code
        )

    async def _post(self, parameters: dict[str, str | None], nonce: str | None = None) -> httpx.Response:
        auth = authenticate(self.credential, self.method, self.issuer)
        form = {key: value for key, value in parameters.items() if value is not None} | auth.form
        headers = {"Accept": "application/json"} | auth.headers
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", self.token_url, nonce=nonce)
        try:
            return await self._http.post(self.token_url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise TokenEndpointUnavailable(self.token_url, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TokenClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def fetch_token(
    token_url: str,
    credential: Credential,
    *,
    scope: str | None = None,
    audience: list[str] | None = None,
    dpop: DPoPKey | None = None,
    source: str | None = None,
) -> Token:
    """One token for ``credential`` (a client of its own; keep a TokenClient for many), from ``source`` if given."""
    async with TokenClient(token_url, credential, dpop=dpop, source=source) as client:
        return await client.fetch(scope, audience)


async def exchange_token(
    token_url: str, credential: Credential, subject_token: str, *, scope: str | None = None
) -> Token:
    """One token that acts for the user of ``subject_token`` (see :meth:`TokenClient.exchange`)."""
    async with TokenClient(token_url, credential) as client:
        return await client.exchange(subject_token, scope)


def _issuer_of(token_url: str) -> str:
    """A realm's issuer, from its token endpoint (a client told only that URL); any other URL as it is."""
    return token_url.removesuffix(KEYCLOAK_TOKEN_PATH) if token_url.endswith(KEYCLOAK_TOKEN_PATH) else token_url


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
