"""Policy files: the fixture loads; every invalid file is refused with its file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.broker.policy import Policy
from sandbox.config import PACKAGE_DIR
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import FileError

FIXTURES = PACKAGE_DIR.parent / "fixtures"
TOOLS = ToolMap.load(FIXTURES / "tools.yaml")


def load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Policy.load(path, TOOLS)


def refusal(tmp_path: Path, text: str) -> FileError:
    with pytest.raises(FileError) as caught:
        load(tmp_path, text)
    return caught.value


def test_the_shipped_policy_loads_with_defaults_applied() -> None:
    policy = Policy.load(FIXTURES / "policy.yaml", TOOLS)
    assert {"read-only-analytics", "invoice-writer", "log-reader", "staging-deployer"} <= set(policy.roles)
    deployer = policy.roles["production-deployer"]
    assert deployer.needs_approval("production") and deployer.max_token_lifetime == 120
    assert policy.roles["invoice-writer"].needs_approval("production")
    assert not policy.roles["invoice-writer"].needs_approval("staging")
    assert policy.roles["log-reader"].dormancy_days == 14 and policy.roles["read-only-analytics"].dormancy_days == 30
    assert policy.needs_mfa("production") and not policy.needs_mfa("staging")


def test_unknown_scope_names_its_line(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        "roles:\n  reader:\n    environments:\n      staging:\n"
        "        - mcp:tool:analytics.read\n        - mcp:tool:root\n",
    )
    assert error.line == 6 and "unknown scope 'mcp:tool:root'" in str(error)
    assert str(error).startswith(f"{tmp_path / 'policy.yaml'}:6:")


def test_unknown_environment_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, "roles:\n  reader:\n    environments:\n      qa: [mcp:tool:logs.read]\n")
    assert error.line == 4 and "unknown environment 'qa'" in str(error)


def test_misspelt_field_names_its_line(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, "roles:\n  reader:\n    environments:\n      staging: [mcp:tool:logs.read]\n    dormancy: 3\n"
    )
    assert error.line == 5 and "not a known field" in str(error)


def test_bad_value_names_its_line(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        "defaults:\n  max_token_lifetime: -5\nroles:\n  r:\n    environments:\n      staging: [mcp:tool:logs.read]\n",
    )
    assert error.line == 2 and "max_token_lifetime" in str(error)


def test_approval_for_an_environment_the_role_lacks(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        "roles:\n  r:\n    environments:\n      staging: [mcp:tool:logs.read]\n    approval_required: [production]\n",
    )
    assert error.line == 5 and "does not grant" in str(error)


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, "roles:\n  r:\n    environments: [staging\n")
    assert error.line >= 3 and "not valid YAML" in str(error)


def test_check_explains_each_violation() -> None:
    policy = Policy.load(FIXTURES / "policy.yaml", TOOLS)
    assert [v.field for v in policy.check(role="nope", environment="staging", credential_type="client_secret")] == [
        "role"
    ]
    problems = policy.check(
        role="staging-deployer", environment="production", credential_type="client_secret", token_lifetime=9999
    )
    assert {v.field for v in problems} == {"environment", "token_lifetime"}
    assert policy.check(role="log-reader", environment="staging", credential_type="private_key_jwt") == []


# Network zones and anomalies (issue 19).

ROLE = "roles:\n  reader:\n    environments:\n      production: [mcp:tool:logs.read]\n"


def test_the_shipped_policy_limits_a_production_role_to_a_zone_and_watches_production() -> None:
    policy = Policy.load(FIXTURES / "policy.yaml", TOOLS)
    assert policy.zone_for("zoned-log-reader", "production") == "127.0.0.2"
    assert policy.zone_for("log-reader", "production") is None
    assert policy.anomalies.watches("production") and not policy.anomalies.watches("staging")
    assert policy.anomalies.rules["refused_calls"].count == 5


def test_zones_and_anomaly_rules_load(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        ROLE + "network_zones:\n  zones: {ops: 127.0.0.9}\n  roles:\n    reader: {production: ops}\n"
        "anomalies:\n  failed_token_requests: {count: 2, window_seconds: 30}\n",
    )
    assert policy.zone_for("reader", "production") == "127.0.0.9"
    assert policy.zones.name_of("127.0.0.9") == "ops"
    assert set(policy.anomalies.rules) == {"failed_token_requests"}
    assert policy.anomalies.watches("staging")  # no environments named: every one is watched
    assert policy.as_dict()["network_zones"] == {
        "zones": {"ops": "127.0.0.9"},
        "roles": {"reader": {"production": "ops"}},
    }


def test_a_policy_without_the_sections_limits_and_watches_nothing(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLE)
    assert policy.zone_for("reader", "production") is None and not policy.anomalies.watches("production")


@pytest.mark.parametrize(
    ("section", "line", "reason"),
    [
        ("network_zones:\n  zones: {ops: 192.0.2.2}\n", 6, "not in 127.0.0.0/8"),
        ("network_zones:\n  zones: {ops: here}\n", 6, "is not an IP address"),
        ("network_zones:\n  zones: {ops: 127.0.0.2}\n  roles:\n    writer: {production: ops}\n", 8, "unknown role"),
        ("network_zones:\n  zones: {ops: 127.0.0.2}\n  roles:\n    reader: {staging: ops}\n", 8, "no environment"),
        ("network_zones:\n  roles:\n    reader: {production: lab}\n", 7, "unknown zone 'lab'"),
        ("anomalies:\n  environments: [qa]\n", 6, "unknown environment 'qa'"),
        ("anomalies:\n  refused_calls: {count: 0, window_seconds: 10}\n", 6, "count"),
        ("anomalies:\n  odd_calls: {count: 1, window_seconds: 10}\n", 6, "odd_calls"),
    ],
)
def test_a_bad_zone_or_anomaly_rule_names_its_line(tmp_path: Path, section: str, line: int, reason: str) -> None:
    error = refusal(tmp_path, ROLE + section)
    assert str(error).startswith(f"{tmp_path / 'policy.yaml'}:{line}:") and reason in str(error), str(error)
