"""The Ory Hydra adapter: the agents' side of :class:`~sandbox.idp.provider.IdentityProvider` on Hydra's admin API.

One tenant is one Hydra (its own issuer and keys), so a tenant here is a name mapped to that Hydra's admin URL.
An agent is a Hydra OAuth 2.0 client: the ``client_credentials`` grant, its scopes (plus the base scopes every
MCP request needs) and its audience as the client's allowed lists, ``client_secret_basic`` or ``private_key_jwt``
with the agent's public keys in the client's JWKS. Hydra names the client in a token's ``sub`` and ``client_id``,
so the client id is also the "service account". What Hydra lacks is refused with :class:`NotSupported` naming
the reason (the same as its declaration in :data:`sandbox.idp.capabilities.HYDRA`), never emulated in silence:

- one secret per client: a new secret ends the old one at once (``rotate_client_secret`` says so in its name of
  the grace it keeps: none);
- no enabled flag: a disabled agent's client keeps its identity but loses its grant types (labelled emulation);
- no token exchange, no readable client events, no people: humans stay on Keycloak.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import RSAKey

from sandbox.config import HydraAddress, Settings
from sandbox.idp.capabilities import HYDRA
from sandbox.idp.provider import (
    EVENTS_READ,
    AgentClient,
    AgentClientSpec,
    Consent,
    EventKind,
    IdpConflict,
    IdpError,
    IdpEvent,
    IdpNotFound,
    IdpUnavailable,
    NotSupported,
    PublishedKey,
)
from sandbox.oidc import discover_async

__all__ = ["HydraProvider", "HydraTenant", "NotSupported", "PeopleElsewhere"]

GRANT_TYPES = ["client_credentials"]
#: Hydra's token endpoint, under its issuer.
TOKEN_PATH = "/oauth2/token"
#: Client metadata keys of the sandbox (Hydra keeps ``metadata`` as given).
ENABLED_KEY = "mcp-sandbox.enabled"
#: A JSON Web Key Set the stack's Hydras publish in their JWKS (``webfinger.jwks.broadcast_keys``) but never sign
#: with: a key put there is *passive*, as a Keycloak key provider with ``active: false`` (see add_signing_key).
PUBLISHED_KEY_SET = "mcp-sandbox.published"


class PeopleElsewhere(IdpError):
    """Users, their consents and delegation scopes live on the people's IdP (Keycloak), not on Hydra."""

    def __init__(self) -> None:
        super().__init__(
            "not supported by hydra: people (admins, delegating users) are on Keycloak, the human-layer IdP",
            "create and log in people through Keycloak; Hydra holds the agents only",
        )


@dataclass(frozen=True)
class HydraTenant:
    issuer: str
    admin_url: str


class HydraProvider:
    """Agents as Hydra clients, one Hydra per tenant; every call raises :class:`IdpError` subclasses only."""

    capabilities = HYDRA

    def __init__(
        self, tenants: Mapping[str, HydraTenant], *, base_scopes: tuple[str, ...] = ("basic",), timeout: float = 30
    ) -> None:
        self.tenants = dict(tenants)
        self.base_scopes = base_scopes
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> HydraProvider:
        """The sandbox tenants' own Hydras; a pool Hydra joins when the broker lends it (:meth:`attach`)."""
        pool = settings.hydra_pool_addresses
        return cls(
            {h.tenant: HydraTenant(h.issuer, h.admin_url) for h in settings.hydras if h not in pool},
            base_scopes=settings.mcp_base_scopes,
        )

    def attach(self, tenant: str, address: HydraAddress) -> None:
        """``tenant``'s agents live on the Hydra at ``address`` from now on."""
        self.tenants[tenant] = HydraTenant(address.issuer, address.admin_url)

    def detach(self, tenant: str) -> None:
        self.tenants.pop(tenant, None)

    async def wipe(self, tenant: str, /) -> int:
        """Leave the tenant's Hydra without a client or token of the tenant, for the next tenant it is lent to:
        every client deleted with its tokens (they introspect inactive). Its signing keys stay. Returns how many
        clients were left to delete."""
        clients = (await self._call(tenant, "GET", "/admin/clients", params={"page_size": 500})).json()
        for client in clients:
            await self.delete_client(tenant, str(client["client_id"]))
        return len(clients)

    # The admin API.
    def _tenant(self, tenant: str) -> HydraTenant:
        try:
            return self.tenants[tenant]
        except KeyError:
            raise IdpNotFound(
                f"no Hydra for tenant {tenant!r} (known: {', '.join(self.tenants) or 'none'})",
                "each tenant on Hydra is one Hydra the stack starts: add it to SANDBOX_TENANTS",
            ) from None

    async def _call(
        self, tenant: str, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        url = f"{self._tenant(tenant).admin_url}{path}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as http:
                response = await http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise IdpUnavailable(
                f"the Hydra of tenant {tenant} is unreachable at {url} ({type(exc).__name__})",
                "start the stack with `mcp-sandbox up --idp hydra` (see `mcp-sandbox status`)",
            ) from exc
        if response.status_code in expect:
            return response
        detail = _error_text(response)
        if response.status_code == 404:
            raise IdpNotFound(f"Hydra of {tenant}: {method} {path} found nothing ({detail})", "check the client id")
        if response.status_code == 409:
            raise IdpConflict(f"Hydra of {tenant}: {method} {path} conflicts ({detail})", "use another client id")
        raise IdpError(
            f"Hydra of {tenant} answered {method} {path} with HTTP {response.status_code} ({detail})",
            f"read its log: mcp-sandbox logs hydra-{tenant}",
            status=response.status_code,
        )

    async def _client(self, tenant: str, client_id: str) -> dict[str, Any]:
        return dict((await self._call(tenant, "GET", f"/admin/clients/{client_id}")).json())

    async def _replace(self, tenant: str, client: dict[str, Any]) -> dict[str, Any]:
        client.pop("client_secret", None)  # PUT without a secret keeps the one the client has
        response = await self._call(tenant, "PUT", f"/admin/clients/{client['client_id']}", json=client)
        return dict(response.json())

    # Tenants: the stack starts one Hydra per tenant; there is nothing to create or delete inside one.
    async def realm_exists(self, tenant: str, /) -> bool:
        if tenant not in self.tenants:
            return False
        await self._call(tenant, "GET", "/health/ready")
        return True

    async def create_tenant_realm(
        self,
        tenant: str,
        template: dict[str, Any],
        /,
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None:
        raise IdpError(
            f"not supported by hydra: a tenant is one Hydra, started by the stack, not made inside one ({tenant})",
            "name the tenant in SANDBOX_TENANTS and start the stack with `mcp-sandbox up --idp hydra`",
        )

    async def delete_realm(self, tenant: str, /) -> None:
        raise IdpError(
            f"not supported by hydra: a tenant is one Hydra; stop the stack to remove it ({tenant})",
            "run `mcp-sandbox down`",
        )

    async def token_endpoint(self, tenant: str, /) -> str:
        return (await discover_async(self._tenant(tenant).issuer)).token_endpoint

    # Agents.
    def _scopes(self, scopes: list[str]) -> str:
        return " ".join(dict.fromkeys([*self.base_scopes, *scopes]))

    async def create_agent_client(self, tenant: str, spec: AgentClientSpec, /) -> AgentClient:
        if spec.token_exchange:
            raise NotSupported(self.capabilities, "token_exchange")
        if spec.binding != "bearer":
            raise IdpError(
                f"Ory Hydra cannot bind an agent's tokens to its key ({spec.binding})",
                "provision the agent with binding bearer, or run the agents on Keycloak (--idp keycloak)",
            )
        if spec.zone:
            raise IdpError(
                "Ory Hydra cannot refuse a token request by its source address, so an agent cannot be limited "
                "to a network zone there",
                "provision zone-limited agents on Keycloak (SANDBOX_IDP=keycloak)",
            )
        body: dict[str, Any] = {
            "client_id": spec.client_id,
            "client_name": spec.name,
            "grant_types": GRANT_TYPES if spec.enabled else [],
            "response_types": ["token"],
            "scope": self._scopes(spec.scopes),
            "audience": list(spec.audiences),
            "access_token_strategy": "jwt",
            "metadata": {**spec.attributes, ENABLED_KEY: spec.enabled},
        }
        secret: str | None = None
        if spec.credential == "private_key_jwt":
            if spec.jwks is None:
                raise IdpError("a private_key_jwt agent needs its public keys", "give the agent's JWKS")
            body.update(
                token_endpoint_auth_method="private_key_jwt",
                token_endpoint_auth_signing_alg=_signing_alg(spec.jwks),
                jwks=spec.jwks,
            )
        else:
            secret = secrets.token_urlsafe(32)
            body.update(token_endpoint_auth_method="client_secret_basic", client_secret=secret)
        await self._call(tenant, "POST", "/admin/clients", expect=(201,), json=body)
        await self._call(
            tenant,
            "PUT",
            f"/admin/clients/{spec.client_id}/lifespans",
            json={"client_credentials_grant_access_token_lifespan": f"{spec.token_lifetime}s"},
        )
        return AgentClient(
            id=spec.client_id, client_id=spec.client_id, service_account_id=spec.client_id, secret=secret
        )

    async def find_client(self, tenant: str, client_id: str, /) -> str | None:
        try:
            return str((await self._client(tenant, client_id))["client_id"])
        except IdpNotFound:
            return None

    async def delete_client(self, tenant: str, internal_id: str, /) -> None:
        await self.revoke_tokens(tenant, internal_id)
        await self._call(tenant, "DELETE", f"/admin/clients/{internal_id}", expect=(204,))

    async def revoke_tokens(self, tenant: str, client_id: str, /) -> None:
        """Revoke every token issued to the client (Hydra's admin form of RFC 7009 for all of a client's tokens)."""
        await self._call(tenant, "DELETE", "/admin/oauth2/tokens", params={"client_id": client_id}, expect=(204,))

    async def set_client_enabled(self, tenant: str, internal_id: str, enabled: bool, /) -> None:
        """Hydra has no enabled flag: a disabled client keeps its id, keys and lists but has no grant type (so it
        gets no token) and its tokens are revoked; enabling gives the grant back."""
        client = await self._client(tenant, internal_id)
        client["grant_types"] = GRANT_TYPES if enabled else []
        client["metadata"] = {**(client.get("metadata") or {}), ENABLED_KEY: enabled}
        await self._replace(tenant, client)
        if not enabled:
            await self.revoke_tokens(tenant, internal_id)

    async def set_default_scopes(self, tenant: str, internal_id: str, scopes: list[str], /) -> None:
        client = await self._client(tenant, internal_id)
        client["scope"] = self._scopes(scopes)
        await self._replace(tenant, client)

    async def client_secret(self, tenant: str, internal_id: str, /) -> str:
        raise IdpError(
            "not supported by hydra: Hydra keeps only a hash of a client's secret, so it cannot be read back",
            "keep the secret from the agent's creation or rotation",
        )

    async def rotate_client_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> str:
        """A new secret that replaces the old one at once: Hydra keeps one secret per client, so there is no grace
        (the capability ``dual_secret_rotation`` is declared missing; callers that need a grace are refused by
        :meth:`keep_rotated_secret`)."""
        client = await self._client(tenant, internal_id)
        if client.get("token_endpoint_auth_method") == "private_key_jwt":
            raise IdpError(
                f"client {internal_id} authenticates with a key, not a secret", "rotate its key (its JWKS) instead"
            )
        secret = secrets.token_urlsafe(32)
        client.pop("client_secret", None)
        await self._call(tenant, "PUT", f"/admin/clients/{internal_id}", json={**client, "client_secret": secret})
        return secret

    async def keep_rotated_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> None:
        raise NotSupported(self.capabilities, "dual_secret_rotation")

    async def end_secret_grace(self, tenant: str, internal_id: str, /) -> None:
        """Nothing to end: the old secret stopped working when the new one was set."""

    async def set_client_jwks(self, tenant: str, internal_id: str, jwks: dict[str, Any], /) -> None:
        """The client's public keys: during a key rotation's grace both the old and the new one."""
        client = await self._client(tenant, internal_id)
        client["jwks"] = jwks
        await self._replace(tenant, client)

    async def add_signing_key(self, tenant: str, private_key_pem: str, *, name: str) -> PublishedKey:
        """Publish the public half of an RSA key the caller holds in the Hydra's JWKS, passively: it goes into
        :data:`PUBLISHED_KEY_SET`, a set Hydra publishes but signs nothing with, so its own tokens are unchanged
        and it never holds the private key. Its ``kid`` comes from ``name``; remove it with
        :meth:`remove_signing_key`."""
        try:
            public = RSAKey.import_key(private_key_pem).as_dict(private=False)
        except ValueError as exc:
            raise IdpError(f"the key to publish is not an RSA private key in PEM ({exc})", "give one") from None
        kid = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        jwk = {**public, "kid": kid, "use": "sig", "alg": "RS256"}
        await self._call(tenant, "PUT", f"/admin/keys/{PUBLISHED_KEY_SET}/{kid}", json=jwk)
        return PublishedKey(component_id=kid, kid=kid)

    async def ensure_scopes(self, tenant: str, scopes: list[str], /) -> None:
        """Nothing to make: a Hydra client's allowed scopes are names, granted as they are listed."""

    async def create_resource_server_client(self, tenant: str, url: str, secret: str, /) -> str:
        raise IdpError(
            f"not needed by hydra: a resource server introspects on the admin API of tenant {tenant!r}'s Hydra, "
            f"without a client of its own ({url})",
            "point the resource server's introspection at the Hydra's admin API",
        )

    async def remove_signing_key(self, tenant: str, component_id: str) -> None:
        """Withdraw a key :meth:`add_signing_key` published; a missing one counts as withdrawn."""
        await self._call(tenant, "DELETE", f"/admin/keys/{PUBLISHED_KEY_SET}/{component_id}", expect=(204, 404))

    async def client_events(
        self, tenant: str, client_id: str, kinds: tuple[EventKind, ...], /, maximum: int = EVENTS_READ
    ) -> list[IdpEvent]:
        raise NotSupported(self.capabilities, "event_emission")

    async def tenant_events(self, tenant: str, kinds: tuple[EventKind, ...], maximum: int, /) -> list[IdpEvent]:
        raise NotSupported(self.capabilities, "event_emission")

    async def introspect(self, tenant: str, token: str, /) -> dict[str, Any]:
        """RFC 7662 on Hydra's admin API: ``{"active": false}`` for a revoked token or a deleted client's."""
        response = await self._call(tenant, "POST", "/admin/oauth2/introspect", data={"token": token})
        return dict(response.json())

    # People stay on Keycloak.
    async def create_tenant_user(
        self,
        tenant: str,
        username: str,
        password: str,
        otp_secret: str | None,
        /,
        *,
        roles: list[str],
        last_name: str = "",
    ) -> str:
        raise PeopleElsewhere()

    async def user_consents(self, tenant: str, user_id: str, /) -> list[Consent]:
        raise PeopleElsewhere()

    async def add_delegation_scope(self, tenant: str, agent_client_id: str, agent_name: str, /) -> None:
        raise NotSupported(self.capabilities, "token_exchange")

    async def remove_delegation_scope(self, tenant: str, agent_client_id: str, /) -> None:
        raise NotSupported(self.capabilities, "token_exchange")


def _signing_alg(jwks: dict[str, Any]) -> str:
    keys = jwks.get("keys") or [{}]
    return str(keys[0].get("alg") or ("ES256" if keys[0].get("kty") == "EC" else "RS256"))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Hydra's admin errors: {"error": {"message", "reason", ...}}
            return str(error.get("reason") or error.get("message") or error)[:200]
        return str(body.get("error_description") or error or body)[:200]
    return str(body)[:200]
