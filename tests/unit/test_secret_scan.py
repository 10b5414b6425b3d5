"""The scan after a test run (sandbox.harness.secret_scan) and the registry it reads (sandbox.issued)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import load_settings
from sandbox.harness.secret_scan import by_design, known_credentials, scan
from sandbox.issued import ENVIRONMENT, remember, remember_answer, remembered, stored_on_purpose
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.keycloak_seed import SeededDatabase

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xMjMifQ.c2lnbmF0dXJlLW9mLWEtcmVhbC10b2tlbg"


def test_the_registry_is_off_unless_configured_and_keeps_what_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "issued.jsonl"
    remember("never-written-anywhere")
    assert not registry.exists()
    monkeypatch.setenv(ENVIRONMENT, str(registry))
    remember("a-client-secret-value", None, "short")
    remember_answer(
        {
            "agent": {"id": "x"},
            "credential": {"client_secret": "another-secret-value"},
            "keys": [{"d": "private-exponent"}],
        }
    )
    assert remembered(registry) == {"a-client-secret-value", "another-secret-value", "private-exponent"}
    assert registry.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def outside_the_run() -> Iterator[Path]:
    """A directory the suite's own scan at the end does not read: this test plants leaks on purpose."""
    with tempfile.TemporaryDirectory(prefix="secret-scan-test-") as directory:
        yield Path(directory)


def test_the_scan_finds_credentials_tokens_and_keys_but_not_where_they_belong(
    outside_the_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = outside_the_run
    settings = load_settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    registry = settings.state_dir / "issued.jsonl"
    settings.state_dir.mkdir()
    monkeypatch.setenv(ENVIRONMENT, str(registry))
    remember("leaked-client-secret", "kept-client-secret")
    settings.secrets_file.write_text(json.dumps({"admin": "the-stack-admin-password"}))
    logs = settings.state_dir / "logs"
    logs.mkdir()
    (logs / "broker.log").write_text('{"event": "oops", "secret": "leaked-client-secret"}\n')
    (logs / "mcp.log").write_text(f"Authorization: Bearer {TOKEN}\n")
    (logs / "clean.log").write_text("nothing to see: sha256:0123456789abcdef and eyJhbGciOiJub25lIn0.e30.\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nMII...\n")
    (reports / "admin.txt").write_text("the-stack-admin-password")
    agent_file = reports / "creds" / "agent.json"
    agent_file.parent.mkdir()
    agent_file.write_text('{"client_secret": "kept-client-secret"}')  # written where its user asked: not a leak
    stored_on_purpose(agent_file)
    (settings.state_dir / "keycloak").mkdir()
    (settings.state_dir / "keycloak" / "db.mv.db").write_text("kept-client-secret the IdP stores it")
    seed = SeededDatabase(settings, KeycloakDistribution(settings)).directory
    seed.mkdir(parents=True)
    seed_admin = {
        "username": "admin",
        "password": "the-seed-password",
        "client_id": "x",
        "client_secret": "seed-secret",
    }
    (seed / "admin.json").write_text(json.dumps(seed_admin))
    (logs / "keycloak.log").write_text("bootstrap with seed-secret\n")
    for tls in (settings.state_dir / "tls", tmp_path / "reports" / "another-stack" / "tls"):  # loopback CAs' keys
        (tls / "servers").mkdir(parents=True)
        (tls / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMII...\n")
        (tls / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\nMII...\n")
        (tls / "servers" / "keycloak-1.key").write_text("-----BEGIN PRIVATE KEY-----\nMII...\n")
    (reports / "tls").mkdir()  # a folder named tls that is no CA's: its keys are leaks
    (reports / "tls" / "stray.key").write_text("-----BEGIN PRIVATE KEY-----\nMII...\n")
    other_stack = tmp_path / "reports" / "another-stack" / "keycloak" / "db"
    other_stack.mkdir(parents=True)
    (other_stack / "keycloakdb.mv.db").write_bytes(b"seed-secret, stored by the IdP of a stack a test made")

    report = scan([settings.state_dir, reports], known_credentials(settings, registry), by_design(settings, registry))
    found = sorted(f"{f.path.name}: {f.what.split(' (')[0]}" for f in report.findings)
    assert found == [
        "admin.txt: an issued credential",
        "broker.log: an issued credential",
        "key.pem: a PEM private key",
        "keycloak.log: an issued credential",
        "mcp.log: a full signed token",
        "stray.key: a PEM private key",
    ]
    assert all("leaked-client-secret" not in str(f) for f in report.findings)  # never the credential itself
    assert report.credentials == 5
