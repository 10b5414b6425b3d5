"""Keycloak's HTTPS port trusts its own stack's CA, read from that stack's state: every stack's Keycloak runs from
one shared distribution, so nothing it trusts may live in (or be written to) the distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sandbox.config import Settings
from sandbox.loopback_ca import LoopbackCA
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.keycloak import open_https
from sandbox.stack.ports import free_port


def stack(tmp_path: Path, name: str) -> Settings:
    """A stack of its own (state directory, HTTPS port) beside the others, on the one distribution cache."""
    return Settings(state_dir=tmp_path / name, cache_dir=tmp_path / "cache", keycloak_https_port=free_port())


def options_of(settings: Settings) -> dict[str, str]:
    lines: list[str] = []
    options = open_https(settings, lines.append)
    assert options and lines == [], lines  # the port was free: HTTPS is on, nothing said
    return dict(option.removeprefix("--").split("=", 1) for option in options)


def trusted_ca(options: dict[str, str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(options["https-trust-store-file"]).read_bytes())


def test_each_stacks_keycloak_trusts_the_ca_that_issues_its_agents_certificates(tmp_path: Path) -> None:
    first, second = stack(tmp_path, "first"), stack(tmp_path, "second")
    options = {settings.state_dir.name: options_of(settings) for settings in (first, second)}
    shared = KeycloakDistribution(first).home
    assert KeycloakDistribution(second).home == shared
    for settings in (first, second):
        mine = options[settings.state_dir.name]
        # `truststore-paths` would have Keycloak merge its trust into `<distribution>/data` and trust that file,
        # which the other stack's Keycloak overwrites when it starts: never used.
        assert "truststore-paths" not in mine
        files = [Path(mine[key]) for key in ("https-trust-store-file", "https-certificate-file")]
        files.append(Path(mine["https-certificate-key-file"]))
        assert all(settings.state_dir in file.parents for file in files), files
        assert not any(shared in file.parents for file in files), files
        agent = LoopbackCA(settings.tls_dir).issue("agent", client=True)  # as a scenario's mTLS agent gets one
        certificate = x509.load_pem_x509_certificate(agent.certificate_file.read_bytes())
        certificate.verify_directly_issued_by(trusted_ca(mine))
    # Neither trusts the other's agents.
    stranger = x509.load_pem_x509_certificate(
        LoopbackCA(second.tls_dir).issue("stranger", client=True).certificate_file.read_bytes()
    )
    with pytest.raises((ValueError, InvalidSignature)):
        stranger.verify_directly_issued_by(trusted_ca(options["first"]))


def test_keycloak_reads_its_trust_store_as_pem(tmp_path: Path) -> None:
    options = options_of(stack(tmp_path, "only"))
    assert options["https-trust-store-type"] == "pem"
    assert Path(options["https-trust-store-file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
