"""The Keycloak adapter: every Admin REST call the product makes goes through this class.

It authenticates as an admin service account of the ``master`` realm (client credentials) and
talks to tenant realms through python-keycloak, one admin client per realm.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import httpx
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakDeleteError,
    KeycloakError,
    KeycloakGetError,
    KeycloakPostError,
    raise_error_from_response,
)

from sandbox.config import Settings
from sandbox.errors import SandboxError
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
    PublishedKey,
)
from sandbox.idp.realm import (
    AGENT_ATTRIBUTE,
    BASE_SCOPES,
    DEMO_CLIENT_ID,
    DPOP_ATTRIBUTE,
    LOGIN_METHOD_MAX_AGE,
    LOGIN_METHOD_REFERENCES,
    MTLS_ATTRIBUTE,
    SCOPE_ROLE_ATTRIBUTE,
    TENANT_ADMIN_ROLE,
    TOKEN_EXCHANGE_ATTRIBUTE,
    USER_LOGIN_CLIENT_ID,
    ZONE_ATTRIBUTE,
    ZONE_EXECUTOR,
    ZONE_POLICY,
    ZONE_PROFILE,
    delegation_scope,
    operator_credentials,
)
from sandbox.loopback import KEEPALIVE, Redial
from sandbox.oidc import discover_async
from sandbox.zones import ZONE_CLAIM

P = ParamSpec("P")
R = TypeVar("R")


def resource_server_client(url: str, secret: str) -> dict[str, Any]:
    """A resource server's own client: no flows, only a credential for RFC 7662 introspection.

    Its ``resource_url`` attribute makes ``resource=<url>`` (RFC 8707) a valid target in token
    requests: Keycloak then narrows the token's ``aud`` to exactly that URL.
    """
    return {
        "clientId": url,
        "name": f"MCP resource server {url} (introspection only)",
        "enabled": True,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret,
        "serviceAccountsEnabled": False,
        "standardFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "attributes": {"resource_url": url},
    }


def audience_mapper(audience: str) -> dict[str, Any]:
    return {
        "name": f"audience {audience}",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "config": {
            "included.custom.audience": audience,
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "id.token.claim": "false",
        },
    }


def zone_claim_mapper(zone: str) -> dict[str, Any]:
    """Puts the agent's network zone in its access tokens (claim ``ZONE_CLAIM``), for the resource servers."""
    return {
        "name": "network zone",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-hardcoded-claim-mapper",
        "config": {
            "claim.name": ZONE_CLAIM,
            "claim.value": zone,
            "jsonType.label": "String",
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "id.token.claim": "false",
            "userinfo.token.claim": "false",
        },
    }


#: Keycloak's event type for each kind of record the broker reads: the one place the two vocabularies meet.
EVENT_TYPES: dict[EventKind, str] = {
    "token_issued": "CLIENT_LOGIN",
    "token_refused": "CLIENT_LOGIN_ERROR",
    "token_exchanged": "TOKEN_EXCHANGE",
    "token_exchange_refused": "TOKEN_EXCHANGE_ERROR",
}
EVENT_KINDS: dict[str, EventKind] = {type_: kind for kind, type_ in EVENT_TYPES.items()}


def idp_event(raw: dict[str, Any]) -> IdpEvent | None:
    """One of Keycloak's event representations in the broker's terms; None (ignored) for a type the broker has
    no kind for, or an event without its client or its time (``time`` is in milliseconds since the epoch)."""
    kind = EVENT_KINDS.get(str(raw.get("type")))
    millis, client_id = raw.get("time"), raw.get("clientId")
    if kind is None or not isinstance(millis, int) or not isinstance(client_id, str):
        return None
    details = raw.get("details") or {}
    return IdpEvent(
        kind=kind,
        at=datetime.fromtimestamp(millis / 1000, tz=UTC),
        client_id=client_id,
        user_id=_text(raw.get("userId")),
        username=_text(details.get("username")),
        scopes=tuple(str(details.get("scope") or "").split()),
        error=_text(raw.get("error")),
        reason=_text(details.get("reason")),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _idp_events(raw: list[dict[str, Any]]) -> list[IdpEvent]:
    return [event for event in map(idp_event, raw) if event is not None]


def _translated(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn python-keycloak's failures into the IdP errors of :mod:`sandbox.idp.provider`, with a cause and a fix.

    Nothing of python-keycloak (nor of its HTTP client) leaves the adapter: a missing thing is
    :class:`IdpNotFound`, a duplicate :class:`IdpConflict`, no answer or a refused service account
    :class:`IdpUnavailable`, and any other refusal :class:`IdpError` with Keycloak's status.
    """

    @wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        adapter = args[0]
        assert isinstance(adapter, KeycloakAdapter)
        try:
            return await method(*args, **kwargs)
        except KeycloakConnectionError as exc:
            if isinstance(exc.__cause__, httpx.TimeoutException):
                raise IdpUnavailable(
                    f"Keycloak at {adapter.base_url} did not answer within {adapter.timeout}s "
                    f"({type(exc.__cause__).__name__})",
                    "it may be overloaded: check `mcp-sandbox status` and its log (mcp-sandbox logs keycloak)",
                ) from exc
            raise IdpUnavailable(
                f"Keycloak at {adapter.base_url} is unreachable ({exc.error_message}: {exc.__cause__!r})",
                "start the stack with `mcp-sandbox up`, or check SANDBOX_KEYCLOAK_URL",
            ) from exc
        except KeycloakAuthenticationError as exc:
            raise IdpUnavailable(
                f"Keycloak at {adapter.base_url} refused the admin service account {adapter.client_id!r}",
                "check SANDBOX_KEYCLOAK_ADMIN_CLIENT_ID/SECRET (it needs the realm-admin role in master)",
            ) from exc
        except KeycloakError as exc:
            status = exc.response_code
            kind = {404: IdpNotFound, 409: IdpConflict, 503: IdpUnavailable}.get(status or 0, IdpError)
            raise kind(_first_line(exc), f"see Keycloak's log ({adapter.base_url})", status=status) from exc
        except httpx.HTTPError as exc:
            raise IdpUnavailable(_first_line(exc), f"check that Keycloak at {adapter.base_url} answers") from exc

    return wrapper


def _raise_for(response: Any, what: str) -> None:
    """A refused admin call made with the raw connection, as the IdP error the broker understands."""
    if response.status_code >= 300:
        raise IdpError(
            f"Keycloak refused the {what} ({response.status_code}: {response.text[:200]})",
            "the sandbox's Keycloak provider (network zones) must be installed; `mcp-sandbox up` builds it",
            status=response.status_code,
        )


def _first_line(exc: Exception) -> str:
    """The failure's type and the first line of its message: what the broker shows and audits."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:160] if text else 'no detail'}"


class KeycloakAdapter:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout: int = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.timeout = timeout
        self._admins: dict[str, KeycloakAdmin] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: int = 30) -> KeycloakAdapter:
        """The adapter for the configured Keycloak: an external one's service account, or our own."""
        client_id, secret = operator_credentials(settings)
        return cls(settings.keycloak_base_url, client_id, secret, timeout=timeout)

    def admin(self, realm: str) -> KeycloakAdmin:
        """The python-keycloak admin client bound to ``realm`` (authenticated in master)."""
        if realm not in self._admins:
            connection = KeycloakOpenIDConnection(
                server_url=self.base_url,
                realm_name=realm,
                user_realm_name="master",
                client_id=self.client_id,
                client_secret_key=self._secret,
                grant_type="client_credentials",
                timeout=self.timeout,
            )
            # python-keycloak's client keeps an idle connection 5 s; ours drops it after 2 s, as every client of
            # the sandbox's servers does, and sends an idempotent call again when its connection dropped with no
            # answer (a ReadError: seen twice while a tenant grew to 10,000 agents, the second time with the 2 s
            # bound already in place)
            transport = Redial(httpx.AsyncHTTPTransport(verify=connection.verify, limits=KEEPALIVE))
            connection.async_s = httpx.AsyncClient(transport=transport)
            self._admins[realm] = KeycloakAdmin(connection=connection)
        return self._admins[realm]

    @_translated
    async def take_over_master_admin(self, username: str, password: str, client_secret: str) -> None:
        """Give the master realm's admin user and this adapter's own service account new credentials.

        For a database copied from a seed: its admins were made with the seed's credentials. The service
        account's secret changes last; the token already held stays valid, new ones need the new secret.
        """
        master = self.admin("master")
        await master.a_set_user_password(await master.a_get_user_id(username), password, temporary=False)
        await master.a_update_client(await master.a_get_client_id(self.client_id), {"secret": client_secret})
        self._admins.clear()

    # Realms (tenants).
    @_translated
    async def realm_exists(self, realm: str) -> bool:
        try:
            await self.admin("master").a_get_realm(realm)
        except KeycloakGetError as exc:
            if exc.response_code == 404:
                return False
            raise
        return True

    async def token_endpoint(self, realm: str) -> str:
        """The realm's token endpoint, from its OpenID configuration."""
        try:
            return (await discover_async(f"{self.base_url}/realms/{realm}")).token_endpoint
        except SandboxError as exc:
            raise IdpUnavailable(exc.cause, exc.fix) from exc

    @_translated
    async def create_tenant_realm(
        self,
        realm: str,
        template: dict[str, Any],
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None:
        """Create ``realm`` from ``template`` with a client scope per tool scope and a client per resource server.

        Keycloak generates the realm's own signing keys, so every tenant has a separate issuer and keys.
        ``resource_servers`` maps each MCP server's canonical URL to its introspection secret: Keycloak only
        answers an introspection for a client in the token's audience, so the client is named by that URL.
        """
        payload = copy.deepcopy(template)
        payload["realm"] = realm
        payload.setdefault("displayName", f"Sandbox tenant {realm}")
        clients = [c for c in payload.get("clients", []) if c.get("clientId") != DEMO_CLIENT_ID or demo_secret]
        for client in clients:
            if client.get("clientId") == DEMO_CLIENT_ID:
                client["secret"] = demo_secret
        clients.extend(resource_server_client(url, secret) for url, secret in resource_servers.items())
        payload["clients"] = clients
        await self.admin("master").a_create_realm(payload)
        await self._record_login_methods(realm)
        await self.ensure_scopes(realm, scopes)

    @_translated
    async def create_resource_server_client(self, realm: str, url: str, secret: str) -> str:
        """Add one more resource server (canonical ``url``) to an existing realm; return the client's internal id."""
        return await self.admin(realm).a_create_client(resource_server_client(url, secret))

    async def _record_login_methods(self, realm: str) -> None:
        """Make the browser flow's password and OTP steps report ``amr`` values, so admin tokens show MFA."""
        admin = self.admin(realm)
        for execution in await admin.a_get_authentication_flow_executions("browser"):
            reference = LOGIN_METHOD_REFERENCES.get(execution.get("providerId", ""))
            if reference and not execution.get("authenticationConfig"):
                await admin.a_create_execution_config(
                    execution["id"],
                    {
                        "alias": f"amr-{reference}",
                        "config": {
                            "default.reference.value": reference,
                            "default.reference.maxAge": str(LOGIN_METHOD_MAX_AGE),
                        },
                    },
                )

    @_translated
    async def delete_realm(self, realm: str) -> None:
        await self.admin("master").a_delete_realm(realm)
        self._admins.pop(realm, None)

    # Agents (confidential clients with a service account).
    @_translated
    async def create_agent_client(self, realm: str, spec: AgentClientSpec) -> AgentClient:
        """Create the agent's client: its scopes only, its audiences, its token lifetime, its credential."""
        attributes = {
            "access.token.lifespan": str(spec.token_lifetime),
            # Keycloak 26.7.3's resource-indicator post-processor fails (HTTP 500, a NullPointerException) on a
            # client-credentials grant with `resource=` when no refresh token is issued, and the official MCP SDK
            # always sends `resource=`. A refresh token here is harmless: refreshing needs the client's credential.
            "client_credentials.use_refresh_token": "true",
            AGENT_ATTRIBUTE: "true",
            **spec.attributes,
        }
        if spec.token_exchange:
            attributes[TOKEN_EXCHANGE_ATTRIBUTE] = "true"
        if spec.binding == "dpop":
            # The dpop feature is on by default in Keycloak 26.4+; this makes a proof required on every token
            # request of the client, and binds each token it issues to the proof's key (cnf.jkt).
            attributes[DPOP_ATTRIBUTE] = "true"
        if spec.binding == "mtls":
            # Each token is bound to the TLS client certificate of the token request (cnf.x5t#S256); a request
            # without one is refused, so the agent takes its tokens on Keycloak's HTTPS port.
            attributes[MTLS_ATTRIBUTE] = "true"
        mappers = [audience_mapper(audience) for audience in spec.audiences]
        if spec.zone:
            await self._ensure_zone_policy(realm)
            attributes[ZONE_ATTRIBUTE] = spec.zone
            mappers.append(zone_claim_mapper(spec.zone))
        if spec.credential == "private_key_jwt":
            if not spec.jwks:
                raise ValueError("private_key_jwt needs the agent's public JWKS")
            attributes.update(
                {
                    "use.jwks.string": "true",
                    "jwks.string": json.dumps(spec.jwks),
                    "token.endpoint.auth.signing.alg": spec.jwks["keys"][0].get("alg", "RS256"),
                }
            )
        payload = {
            "clientId": spec.client_id,
            "name": spec.name,
            "enabled": spec.enabled,
            "protocol": "openid-connect",
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "fullScopeAllowed": False,
            "clientAuthenticatorType": "client-jwt" if spec.credential == "private_key_jwt" else "client-secret",
            "defaultClientScopes": [*BASE_SCOPES, *spec.scopes],
            "optionalClientScopes": [],
            "protocolMappers": mappers,
            "attributes": attributes,
        }
        admin = self.admin(realm)
        internal_id = await admin.a_create_client(payload)
        service_account = await admin.a_get_client_service_account_user(internal_id)
        await self._sync_scope_roles(realm, service_account["id"], spec.scopes)
        secret = None
        if spec.credential == "client_secret":
            secret = (await admin.a_get_client_secrets(internal_id))["value"]
        return AgentClient(internal_id, spec.client_id, service_account["id"], secret)

    async def _ensure_zone_policy(self, realm: str) -> None:
        """The realm's client profile and policy that run the sandbox's zone executor on every client's token
        requests (once per realm; the executor leaves clients without a zone alone)."""
        connection = self.admin(realm).connection
        base = f"admin/realms/{realm}/client-policies"
        profiles = (await connection.a_raw_get(f"{base}/profiles")).json()
        if not any(p.get("name") == ZONE_PROFILE for p in profiles.get("profiles", [])):
            profiles.setdefault("profiles", []).append(
                {
                    "name": ZONE_PROFILE,
                    "description": "Token requests of a client limited to a network zone come only from it",
                    "executors": [{"executor": ZONE_EXECUTOR, "configuration": {}}],
                }
            )
            profiles.pop("globalProfiles", None)
            _raise_for(await connection.a_raw_put(f"{base}/profiles", data=json.dumps(profiles)), "zone profile")
        policies = (await connection.a_raw_get(f"{base}/policies")).json()
        if not any(p.get("name") == ZONE_POLICY for p in policies.get("policies", [])):
            policies.setdefault("policies", []).append(
                {
                    "name": ZONE_POLICY,
                    "description": f"Runs {ZONE_EXECUTOR} for every client (attribute {ZONE_ATTRIBUTE} sets a zone)",
                    "enabled": True,
                    "conditions": [{"condition": "any-client", "configuration": {}}],
                    "profiles": [ZONE_PROFILE],
                }
            )
            policies.pop("globalPolicies", None)
            _raise_for(await connection.a_raw_put(f"{base}/policies", data=json.dumps(policies)), "zone policy")

    @_translated
    async def delete_client(self, realm: str, internal_id: str) -> None:
        """Remove a client; one that is already gone counts as removed."""
        try:
            await self.admin(realm).a_delete_client(internal_id)
        except KeycloakDeleteError as exc:
            if exc.response_code != 404:
                raise

    @_translated
    async def find_client(self, realm: str, client_id: str) -> str | None:
        """Keycloak's internal id of the client named ``client_id``, or None."""
        return await self.admin(realm).a_get_client_id(client_id)

    @_translated
    async def set_client_enabled(self, realm: str, internal_id: str, enabled: bool) -> None:
        """A disabled client gets no token, and its tokens introspect as inactive."""
        await self.admin(realm).a_update_client(internal_id, {"enabled": enabled})

    @_translated
    async def set_default_scopes(self, realm: str, internal_id: str, scopes: list[str]) -> None:
        """Make ``scopes`` (plus the base scopes) exactly the client's default scopes: its next token carries them."""
        admin = self.admin(realm)
        wanted = {*BASE_SCOPES, *scopes}
        current = {scope["name"]: scope["id"] for scope in await admin.a_get_client_default_client_scopes(internal_id)}
        ids = {scope["name"]: scope["id"] for scope in await admin.a_get_client_scopes()}
        for name in sorted(wanted - set(current)):
            await admin.a_add_client_default_client_scope(internal_id, ids[name], {})
        for name in sorted(set(current) - wanted):
            await admin.a_delete_client_default_client_scope(internal_id, current[name])
        service_account = await admin.a_get_client_service_account_user(internal_id)
        await self._sync_scope_roles(realm, service_account["id"], scopes)

    async def _sync_scope_roles(self, realm: str, user_id: str, scopes: list[str]) -> None:
        """Give a user (or service account) exactly the scope roles of ``scopes``.

        A tool scope is in a token only when the token's user holds the realm role of the same name (the scope's
        role scope mapping, see :meth:`ensure_scopes`): without it even a default scope is left out.
        """
        admin = self.admin(realm)
        roles = await admin.a_get_realm_roles(brief_representation=False)
        gated = {role["name"]: role for role in roles if SCOPE_ROLE_ATTRIBUTE in (role.get("attributes") or {})}
        held = {role["name"]: role for role in await admin.a_get_realm_roles_of_user(user_id) if role["name"] in gated}
        missing = [gated[name] for name in sorted(set(scopes) - set(held)) if name in gated]
        extra = [held[name] for name in sorted(set(held) - set(scopes))]
        if missing:
            await admin.a_assign_realm_roles(user_id, missing)
        if extra:
            await admin.a_delete_realm_roles_of_user(user_id, extra)

    @_translated
    async def rotate_client_secret(self, realm: str, internal_id: str, grace_seconds: int) -> str:
        """Issue a new secret; the old one stays valid for ``grace_seconds`` (Keycloak's secret rotation).

        The tenant template's client policy (executor ``secret-rotation``) keeps the old secret as the
        "rotated" one; its expiry is then set to this rotation's grace, so each rotation has its own.
        """
        secret = (await self.admin(realm).a_generate_client_secrets(internal_id))["value"]
        await self.keep_rotated_secret(realm, internal_id, grace_seconds)
        return str(secret)

    @_translated
    async def keep_rotated_secret(self, realm: str, internal_id: str, grace_seconds: int) -> None:
        """The rotated (old) secret stays valid ``grace_seconds`` from now; with 0 it is invalid at once."""
        if grace_seconds <= 0:
            await self.end_secret_grace(realm, internal_id)
            return
        admin = self.admin(realm)
        client = await admin.a_get_client(internal_id)
        attributes = dict(client.get("attributes", {}))
        attributes["client.secret.rotated.expiration.time"] = str(int(time.time()) + grace_seconds)
        await admin.a_update_client(internal_id, {"attributes": attributes})

    @_translated
    async def client_secret(self, realm: str, internal_id: str) -> str:
        """The client's current secret (the broker compares its fingerprint to tell an interrupted rotation)."""
        return str((await self.admin(realm).a_get_client_secrets(internal_id))["value"])

    @_translated
    async def end_secret_grace(self, realm: str, internal_id: str) -> None:
        """Invalidate the rotated (old) secret now."""
        connection = self.admin(realm).connection
        response = await connection.a_raw_delete(
            f"admin/realms/{realm}/clients/{internal_id}/client-secret/rotated", data=None
        )
        if response.status_code not in (204, 404):
            raise_error_from_response(response, KeycloakDeleteError)

    @_translated
    async def set_client_jwks(self, realm: str, internal_id: str, jwks: dict[str, Any]) -> None:
        """Replace the public keys a private_key_jwt client may sign its assertions with."""
        admin = self.admin(realm)
        client = await admin.a_get_client(internal_id)
        attributes = dict(client.get("attributes", {}))
        attributes["jwks.string"] = json.dumps(jwks)
        await admin.a_update_client(internal_id, {"attributes": attributes})

    @_translated
    async def client_events(
        self, realm: str, client_id: str, kinds: tuple[EventKind, ...], maximum: int = EVENTS_READ
    ) -> list[IdpEvent]:
        """The realm's recorded events of these kinds for one client, newest first."""
        query = {"client": client_id, "type": [EVENT_TYPES[kind] for kind in kinds], "max": maximum}
        return _idp_events(await self.admin(realm).a_get_events(query))

    @_translated
    async def tenant_events(self, realm: str, kinds: tuple[EventKind, ...], maximum: int) -> list[IdpEvent]:
        """The realm's recorded events of these kinds, every client's, newest first."""
        query = {"type": [EVENT_TYPES[kind] for kind in kinds], "max": maximum}
        return _idp_events(await self.admin(realm).a_get_events(query))

    @_translated
    async def create_tenant_admin(self, realm: str, username: str, password: str, otp_secret: str | None) -> str:
        """Create a human admin of the tenant: a user with a password, the tenant-admin role and, if given, TOTP.

        ``otp_secret`` is Keycloak's raw secret; an authenticator app gets its base32 form.
        """
        return await self.create_tenant_user(
            realm, username, password, otp_secret, roles=[TENANT_ADMIN_ROLE], last_name=f"{realm} admin"
        )

    @_translated
    async def create_tenant_user(
        self,
        realm: str,
        username: str,
        password: str,
        otp_secret: str | None = None,
        *,
        roles: list[str],
        last_name: str = "",
    ) -> str:
        """Create a human user of the tenant with a password, these realm roles and, if given, TOTP; return its id.

        A user's scope roles (tool scopes as realm roles) are what an agent acting for the user may get at most.
        """
        admin = self.admin(realm)
        credentials: list[dict[str, Any]] = [{"type": "password", "value": password, "temporary": False}]
        if otp_secret is not None:
            credentials.append(
                {
                    "type": "otp",
                    "userLabel": "sandbox authenticator",
                    "secretData": json.dumps({"value": otp_secret}),
                    "credentialData": json.dumps(
                        {"subType": "totp", "digits": 6, "counter": 0, "period": 30, "algorithm": "HmacSHA1"}
                    ),
                }
            )
        user_id = await admin.a_create_user(
            {
                "username": username,
                "email": f"{username}@{realm}.example",
                "emailVerified": True,
                "firstName": username,
                "lastName": last_name or f"{realm} user",
                "enabled": True,
                "credentials": credentials,
            }
        )
        if roles:
            await admin.a_assign_realm_roles(user_id, [await admin.a_get_realm_role(name) for name in roles])
        return user_id

    @_translated
    async def user_consents(self, realm: str, user_id: str) -> list[Consent]:
        """What the user consented to, per client."""
        return [
            Consent(
                client_id=raw.get("clientId", ""),
                scopes=tuple(raw.get("grantedClientScopes") or ()),
                at=datetime.fromtimestamp((raw.get("createdDate") or 0) / 1000, tz=UTC),
            )
            for raw in await self.admin(realm).a_user_consents(user_id)
        ]

    # Delegation: a user lets one agent act for them (Keycloak standard token exchange).
    @_translated
    async def add_delegation_scope(self, realm: str, agent_client_id: str, agent_name: str) -> None:
        """Let users consent to the agent acting for them: an optional scope of the user login client that puts
        the agent in the user's token ``aud``, which standard token exchange requires of the subject token."""
        admin = self.admin(realm)
        scope_id = await admin.a_create_client_scope(
            {
                "name": delegation_scope(agent_client_id),
                "description": f"Let the agent {agent_name} act for you",
                "protocol": "openid-connect",
                "attributes": {
                    "include.in.token.scope": "true",
                    "display.on.consent.screen": "true",
                    "consent.screen.text": f"Let the agent {agent_name} act for you, with at most your permissions",
                },
                "protocolMappers": [
                    {
                        "name": f"audience {agent_client_id}",
                        "protocol": "openid-connect",
                        "protocolMapper": "oidc-audience-mapper",
                        "config": {
                            "included.client.audience": agent_client_id,
                            "access.token.claim": "true",
                            "introspection.token.claim": "true",
                            "id.token.claim": "false",
                        },
                    }
                ],
            },
            skip_exists=True,
        )
        login_client = await admin.a_get_client_id(USER_LOGIN_CLIENT_ID)
        if login_client is None:
            raise SandboxError(
                f"realm {realm} has no {USER_LOGIN_CLIENT_ID} client", "create the tenant from the current template"
            )
        await admin.a_add_client_optional_client_scope(login_client, scope_id, {})

    @_translated
    async def remove_delegation_scope(self, realm: str, agent_client_id: str) -> None:
        """Remove the agent's delegation scope: no user can name the agent in a token any more. A missing one counts."""
        admin = self.admin(realm)
        scope = await admin.a_get_client_scope_by_name(delegation_scope(agent_client_id))
        if scope is None:
            return
        login_client = await admin.a_get_client_id(USER_LOGIN_CLIENT_ID)
        if login_client is not None:
            try:
                await admin.a_delete_client_optional_client_scope(login_client, scope["id"])
            except KeycloakDeleteError as exc:
                if exc.response_code != 404:
                    raise
        await admin.a_delete_client_scope(scope["id"])

    @_translated
    async def client_scope_names(self, realm: str, internal_id: str) -> list[str]:
        scopes = await self.admin(realm).a_get_client_default_client_scopes(internal_id)
        return [scope["name"] for scope in scopes]

    # Realm signing keys and client scopes (certify: tokens a trusted issuer signed, scopes a manifest names).
    @_translated
    async def add_signing_key(
        self, realm: str, private_key_pem: str, *, name: str, priority: int = -100
    ) -> PublishedKey:
        """Publish an RSA key the caller holds in the realm's JWKS (Keycloak names it: its ``kid``).

        The key is *passive* (``active: false``): Keycloak verifies with it and publishes it, but never signs
        the realm's own tokens with it, so the realm's tokens are unchanged. Remove it with
        :meth:`remove_signing_key`.
        """
        admin = self.admin(realm)
        realm_id = (await self.admin("master").a_get_realm(realm))["id"]
        component = await admin.a_create_component(
            {
                "name": name,
                "providerId": "rsa",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": realm_id,
                "config": {
                    "privateKey": [private_key_pem],
                    "priority": [str(priority)],
                    "active": ["false"],
                    "enabled": ["true"],
                    "algorithm": ["RS256"],
                },
            }
        )
        keys = (await admin.a_get_keys()).get("keys", [])
        kid = next((key["kid"] for key in keys if key.get("providerId") == component), None)
        if kid is None:
            await admin.a_delete_component(component)
            raise SandboxError(f"Keycloak did not publish the key {name!r} in realm {realm}", "check its log")
        return PublishedKey(component, kid)

    @_translated
    async def remove_signing_key(self, realm: str, component_id: str) -> None:
        """Remove a realm component (a key provider added by :meth:`add_signing_key`); a missing one counts."""
        try:
            await self.admin(realm).a_delete_component(component_id)
        except KeycloakDeleteError as exc:
            if exc.response_code != 404:
                raise

    @_translated
    async def ensure_scopes(self, realm: str, scopes: list[str]) -> None:
        """Make sure the realm has a client scope for each of ``scopes`` (included in tokens' ``scope``), each
        gated by the realm role of the same name: Keycloak puts the scope in a token only when the token's user
        (a person, or an agent's service account) holds that role. Agents get the roles of their scopes; a user's
        roles bound what an agent acting for the user gets."""
        admin = self.admin(realm)
        for scope in scopes:
            scope_id = await admin.a_create_client_scope(
                {
                    "name": scope,
                    "protocol": "openid-connect",
                    "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"},
                },
                skip_exists=True,
            )
            await admin.a_create_realm_role(
                {
                    "name": scope,
                    "description": f"May get tokens with the scope {scope}",
                    "attributes": {SCOPE_ROLE_ATTRIBUTE: ["true"]},
                },
                skip_exists=True,
            )
            role = await admin.a_get_realm_role(scope)
            response = await admin.connection.a_raw_post(
                f"admin/realms/{realm}/client-scopes/{scope_id}/scope-mappings/realm", data=json.dumps([role])
            )
            raise_error_from_response(response, KeycloakPostError, expected_codes=[204])
