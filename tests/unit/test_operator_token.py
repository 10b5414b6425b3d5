"""The platform operator's token: one client-credentials request to the master realm, from the one place that
knows the operator's credentials; a refusal or a missing secret is one line that names the fix."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from sandbox.admin import operator_token
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp.realm import ADMIN_CLIENT_ID, operator_client_id, operator_credentials
from sandbox.stack_secrets import Secrets


class Master:
    """A loopback stand-in for the master realm: its OpenID configuration and its token endpoint."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.forms: list[dict[str, list[str]]] = []
        master = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                issuer = f"http://127.0.0.1:{master.port}/realms/master"
                self._answer(
                    200,
                    {
                        "issuer": issuer,
                        "token_endpoint": f"{issuer}/protocol/openid-connect/token",
                        "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
                        "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                master.forms.append(parse_qs(self.rfile.read(length).decode()))
                if master.status == 200:
                    self._answer(200, {"access_token": "operator-token", "token_type": "Bearer"})
                else:
                    self._answer(master.status, {"error": "unauthorized_client"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def master(request: pytest.FixtureRequest) -> Iterator[Master]:
    served = Master(getattr(request, "param", 200))
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def settings_for(master: Master, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(keycloak_port=master.port, state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", **overrides)


def test_the_operator_token_comes_from_the_master_realm_with_the_stack_s_secret(master: Master, tmp_path: Path) -> None:
    settings = settings_for(master, tmp_path)
    secret = Secrets(settings).get_or_create(ADMIN_CLIENT_ID)
    assert operator_token(settings) == "operator-token"
    assert master.forms == [
        {"grant_type": ["client_credentials"], "client_id": [ADMIN_CLIENT_ID], "client_secret": [secret]}
    ]


@pytest.mark.parametrize("master", [401], indirect=True)
def test_a_refused_operator_token_names_the_client_to_check(master: Master, tmp_path: Path) -> None:
    settings = settings_for(master, tmp_path)
    Secrets(settings).get_or_create(ADMIN_CLIENT_ID)
    with pytest.raises(SandboxError) as refused:
        operator_token(settings)
    assert "refused the operator's token (401" in refused.value.cause
    assert ADMIN_CLIENT_ID in refused.value.fix


def test_without_the_stack_s_secrets_the_fix_is_to_start_the_stack(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    with pytest.raises(SandboxError) as missing:
        operator_credentials(settings)
    assert "start the stack" in missing.value.fix


def test_an_external_idp_needs_its_service_account(tmp_path: Path) -> None:
    settings = Settings(keycloak_url="http://127.0.0.1:9", state_dir=tmp_path / "state")
    with pytest.raises(SandboxError) as missing:
        operator_credentials(settings)
    assert "SANDBOX_KEYCLOAK_ADMIN_CLIENT_SECRET" in missing.value.fix
    account = Settings(
        keycloak_url="http://127.0.0.1:9",
        keycloak_admin_client_id="ops",
        keycloak_admin_client_secret="s3cret",
        state_dir=tmp_path / "state",
    )
    assert operator_credentials(account) == ("ops", "s3cret")
    assert operator_client_id(account) == "ops"
    assert operator_client_id(settings) == ADMIN_CLIENT_ID
