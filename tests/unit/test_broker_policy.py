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
