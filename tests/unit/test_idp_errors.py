"""The Keycloak adapter lets no python-keycloak or HTTP error out: each becomes one of the IdP errors the
broker handles, with Keycloak's status and a one-line cause (a stand-in for python-keycloak's admin client)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakPostError,
    KeycloakPutError,
)

from sandbox.idp import IdentityProvider, IdpConflict, IdpError, IdpNotFound, IdpUnavailable, identity_provider
from sandbox.idp.keycloak import KeycloakAdapter


class Refusing:
    """python-keycloak's admin client of one realm, failing every update with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def a_update_client(self, internal_id: str, payload: dict[str, Any]) -> None:
        raise self.error


def adapter_failing_with(error: Exception) -> KeycloakAdapter:
    adapter = KeycloakAdapter("http://127.0.0.1:9", "sandbox-admin", "not-a-secret")
    adapter.admin = lambda realm: Refusing(error)  # type: ignore[method-assign,assignment,return-value]
    return adapter


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (KeycloakPutError(error_message=b'{"error":"Could not find client"}', response_code=404), IdpNotFound, 404),
        (KeycloakPostError(error_message=b'{"errorMessage":"exists"}', response_code=409), IdpConflict, 409),
        (KeycloakPutError(error_message=b"not ready", response_code=503), IdpUnavailable, 503),
        (KeycloakPutError(error_message=b"bad representation", response_code=400), IdpError, 400),
        (KeycloakConnectionError("Can't connect to server"), IdpUnavailable, None),
        (KeycloakAuthenticationError(error_message=b"invalid_client", response_code=401), IdpUnavailable, None),
        (httpx.ReadTimeout("timed out"), IdpUnavailable, None),
    ],
)
async def test_keycloak_failures_become_idp_errors(error: Exception, kind: type[IdpError], status: int | None) -> None:
    adapter = adapter_failing_with(error)
    with pytest.raises(IdpError) as raised:
        await adapter.set_client_enabled("acme", "client-1", False)
    assert type(raised.value) is kind
    assert raised.value.status == status
    assert "\n" not in str(raised.value)
    assert raised.value.__cause__ is error


def test_the_sandbox_idp_is_keycloak_behind_the_interface(tmp_path: Any) -> None:
    from sandbox.config import Settings
    from sandbox.stack_secrets import Secrets

    settings = Settings(state_dir=tmp_path)
    Secrets(settings).get_or_create("sandbox-admin")
    provider: IdentityProvider = identity_provider(settings)
    assert isinstance(provider, KeycloakAdapter)
    assert provider.base_url == settings.keycloak_base_url
