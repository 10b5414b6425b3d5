"""The protected-resource metadata lists each trusted issuer exactly as its tokens carry it in ``iss``.

The MCP SDK client takes the listed issuer as the one the authorization server's metadata must name, compared as
a string (RFC 8414 §3.3). A root issuer (Ory Hydra's, ``http://host:port/``) re-rendered in another form would
make the SDK refuse the authorization server (``OAuthFlowError: issuer mismatch``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.client.auth.utils import validate_metadata_issuer
from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata
from starlette.testclient import TestClient

from sandbox.config import HydraAddress, load_settings
from sandbox.mcp_server import app as app_module
from sandbox.mcp_server.options import ServerOptions

HYDRA = HydraAddress("acme", "127.0.0.1", 18090, 18091).issuer
REALM = "http://127.0.0.1:18080/realms/acme"
BARE_ROOT = "http://127.0.0.1:18092"  # a root issuer written without its "/" stays so: never re-rendered


def listed(tmp_path: Path, issuers: list[str]) -> list[str]:
    settings = load_settings(state_dir=tmp_path)
    options = ServerOptions.standalone(settings, issuers=issuers, port=2, mode="jwt", broker_url=None)
    with TestClient(app_module.build_app(options), base_url="http://127.0.0.1:2") as served:
        answer = served.get("/.well-known/oauth-protected-resource/mcp")
    assert answer.status_code == 200, answer.text
    servers = answer.json()["authorization_servers"]
    assert isinstance(servers, list)
    return [str(server) for server in servers]


def test_a_hydra_issuer_is_its_root_url_with_the_slash() -> None:
    assert HYDRA == "http://127.0.0.1:18090/"
    assert HydraAddress("acme", "127.0.0.1", 18090, 18091).public_url == "http://127.0.0.1:18090"


def test_every_issuer_is_listed_as_written(tmp_path: Path) -> None:
    assert listed(tmp_path, [REALM, HYDRA, BARE_ROOT]) == [REALM, HYDRA, BARE_ROOT]


@pytest.mark.parametrize("issuer", [REALM, HYDRA, BARE_ROOT])
def test_the_sdk_client_accepts_the_metadata_of_the_issuer_it_is_shown(tmp_path: Path, issuer: str) -> None:
    # What the SDK does (mcp.client.auth.oauth2): the first authorization server of the resource's metadata
    # becomes the expected issuer, and the authorization server's metadata must name it.
    document = {"resource": "http://127.0.0.1:2/mcp", "authorization_servers": listed(tmp_path, [issuer])}
    expected = str(ProtectedResourceMetadata.model_validate(document).authorization_servers[0])
    metadata = OAuthMetadata(
        issuer=issuer,  # type: ignore[arg-type]  # what the IdP serves: its own issuer
        authorization_endpoint=f"{issuer.rstrip('/')}/auth",  # type: ignore[arg-type]
        token_endpoint=f"{issuer.rstrip('/')}/token",  # type: ignore[arg-type]
    )
    validate_metadata_issuer(metadata, expected)  # raises OAuthFlowError on a mismatch
    assert expected == issuer


def test_an_issuer_given_as_tenant_equals_url_is_listed_as_its_url_and_names_its_tenant(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    realm = settings.issuer("acme")
    options = ServerOptions.standalone(
        settings, issuers=[f"initech={HYDRA}", realm, BARE_ROOT], port=2, mode="jwt", broker_url=None
    )
    assert options.issuers == (HYDRA, realm, BARE_ROOT)
    # named as given; a realm of the sandbox's own Keycloak by the settings; any other issuer stays unnamed
    assert options.tenant_names == {HYDRA: "initech", realm: "acme"}
    assert listed(tmp_path, [f"initech={HYDRA}"]) == [HYDRA]
