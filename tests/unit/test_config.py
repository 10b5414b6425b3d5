from pathlib import Path

import pytest

from sandbox.config import DEFAULT_KEYCLOAK_VERSION, KNOWN_KEYCLOAK_SHA256, InvalidSettings, Settings, load_settings


def test_settings_refuse_a_host_that_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_HOST", "192.0.2.10")
    with pytest.raises(InvalidSettings, match=r"SANDBOX_HOST='192\.0\.2\.10' is not a loopback address"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SANDBOX_KEYCLOAK_PORT", "abc", "SANDBOX_KEYCLOAK_PORT='abc' is not a port number from 1 to 65535"),
        ("SANDBOX_BROKER_PORT", "99999", "SANDBOX_BROKER_PORT='99999' is not a port number from 1 to 65535"),
        ("SANDBOX_MCP_PORT", "-1", "SANDBOX_MCP_PORT='-1' is not a port number from 1 to 65535"),
        ("SANDBOX_MCP_JWT_PORT", "0", "SANDBOX_MCP_JWT_PORT='0' is not a port number from 1 to 65535"),
        ("SANDBOX_TENANTS", "acme", """SANDBOX_TENANTS='acme' is not a JSON list, such as ["acme", "globex"]"""),
        ("SANDBOX_RUNTIME", "podman", "SANDBOX_RUNTIME='podman' is not one of: local, docker"),
        ("SANDBOX_STARTUP_TIMEOUT", "soon", "SANDBOX_STARTUP_TIMEOUT='soon' is not a number"),
        ("SANDBOX_BROKER_MOVABLE_CLOCK", "maybe", "SANDBOX_BROKER_MOVABLE_CLOCK='maybe' is not true or false"),
    ],
)
def test_a_bad_setting_names_its_variable_its_value_and_the_form_expected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    message = str(raised.value)
    assert expected in message and "\n" not in message
    assert message.endswith("; give it that form, or unset it")


def test_ports_at_the_ends_of_the_range_are_accepted() -> None:
    assert load_settings(keycloak_port=1, broker_port=65535).broker_url.endswith(":65535")


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


def test_the_settings_name_the_tenants_of_their_own_issuers_and_no_other() -> None:
    settings = Settings(tenants=["acme", "globex"], idp="hydra", hydra_pool=1)
    own, pool = settings.hydra("acme"), settings.hydra("pool-1")
    assert settings.tenant_named_by(settings.issuer("acme")) == "acme"
    assert settings.tenant_named_by(settings.issuer("made-later")) == "made-later"  # a realm the broker made
    assert settings.tenant_named_by(own.issuer) == "acme"
    unnamed = [
        pool.issuer,  # lent to a tenant by the broker, which names it in its trust list
        f"{settings.issuer('acme')}/",  # issuers compare as exact strings: not this realm's
        f"{settings.issuer('acme')}/more",
        f"{settings.keycloak_base_url}/realms/",
        "http://127.0.0.1:9/realms/acme",  # another Keycloak's realm
    ]
    assert [settings.tenant_named_by(issuer) for issuer in unnamed] == [None] * len(unnamed)
