from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.config import DEFAULT_KEYCLOAK_VERSION, KNOWN_KEYCLOAK_SHA256, Settings, load_settings


def test_settings_refuse_a_host_that_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_HOST", "192.0.2.10")
    with pytest.raises(ValidationError, match="not a loopback address"):
        load_settings()


def test_settings_accept_other_loopback_addresses() -> None:
    assert load_settings(host="127.0.0.2").keycloak_base_url == "http://127.0.0.2:18080"


def test_environment_round_trip_gives_the_same_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = load_settings(state_dir=tmp_path, keycloak_port=28080, tenants=["one", "two"])
    for key, value in original.as_environment().items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


def test_derived_urls_follow_the_ports() -> None:
    settings = Settings(keycloak_port=1, keycloak_management_port=2, broker_port=3, mcp_port=4)
    assert settings.issuer("acme") == "http://127.0.0.1:1/realms/acme"
    assert settings.keycloak_health_url == "http://127.0.0.1:2/health/ready"
    assert settings.broker_url == "http://127.0.0.1:3"
    assert settings.mcp_url == "http://127.0.0.1:4/mcp"


def test_external_keycloak_url_replaces_the_local_one() -> None:
    settings = Settings(keycloak_url="http://127.0.0.1:9999/")
    assert settings.external_keycloak
    assert settings.issuer("t") == "http://127.0.0.1:9999/realms/t"


def test_the_pinned_version_has_a_known_checksum_and_others_need_one() -> None:
    assert Settings().expected_keycloak_sha256 == KNOWN_KEYCLOAK_SHA256[DEFAULT_KEYCLOAK_VERSION]
    assert Settings(keycloak_version="26.0.0").expected_keycloak_sha256 is None
    assert Settings(keycloak_version="26.0.0", keycloak_sha256="ab").expected_keycloak_sha256 == "ab"
