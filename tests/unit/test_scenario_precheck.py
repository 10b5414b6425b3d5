"""A scenario is checked against the stack's policy and tool map when it loads: every name it uses, at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import load_settings
from sandbox.scenarios.catalog import Catalog
from sandbox.scenarios.loader import load_scenario
from sandbox.yamlfile import FileError

ROOT = Path(__file__).parent.parent.parent
GOOD = """\
name: precheck
description: d
agents:
  analyst: {role: read-only-analytics}
steps:
  - provision: analyst
  - call_tool: {agent: analyst, tool: analytics.query, expect: allowed}
  - list_tools: {agent: analyst, expect: [analytics.query]}
  - expect_status: {agent: analyst, status: active}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_settings(load_settings())


def _load(tmp_path: Path, text: str, catalog: Catalog) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    load_scenario(path, catalog)


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("analyst", "Analyst_1", 4, "agent name 'Analyst_1' breaks the broker's naming rule"),
        ("{role: read-only-analytics}", "{role: root}", 4, "unknown role 'root'; known roles: invoice-writer"),
        (
            "{role: read-only-analytics}",
            "{role: staging-deployer, environment: production}",
            4,
            "role 'staging-deployer' has no environment 'production'",
        ),
        (
            "{role: read-only-analytics}",
            "{role: read-only-analytics, token_lifetime: 9999}",
            4,
            "9999s exceeds role 'read-only-analytics'",
        ),
        ("tool: analytics.query, expect: allowed", "tool: analytics.qurey, expect: allowed", 7, "unknown tool"),
        ("expect: [analytics.query]", "expect: [analytics.query, nosuch.tool]", 8, "unknown tool 'nosuch.tool'"),
        ("status: active", "status: gone", 9, "steps[3].expect_status.status is 'gone'"),
        ("{role: read-only-analytics}", "{role: read-only-analytics, zone: lab}", 4, "unknown network zone 'lab'"),
        (
            "tool: analytics.query, expect: allowed",
            "tool: analytics.query, from_zone: lab, expect: allowed",
            7,
            "unknown network zone 'lab'; use a zone of the policy's network_zones: office (127.0.0.3), ops",
        ),
    ],
)
def test_a_name_the_stack_does_not_know_fails_at_its_line(
    tmp_path: Path, catalog: Catalog, old: str, new: str, line: int, words: str
) -> None:
    with pytest.raises(FileError) as raised:
        _load(tmp_path, GOOD.replace(old, new), catalog)
    assert raised.value.line == line, str(raised.value)
    assert words in str(raised.value)
    assert str(raised.value).startswith(f"{tmp_path / 's.yaml'}:{line}: ")


def test_an_unknown_user_scope_is_named(tmp_path: Path, catalog: Catalog) -> None:
    text = GOOD.replace(
        "agents:", "tenants:\n  main:\n    users:\n      dana: {scopes: [mcp:tool:analytics.raed]}\nagents:"
    )
    with pytest.raises(FileError, match=r"user 'dana' holds unknown scope 'mcp:tool:analytics\.raed'") as raised:
        _load(tmp_path, text, catalog)
    assert raised.value.line == 6


def test_an_agent_provisioned_to_be_refused_may_break_the_policy(tmp_path: Path, catalog: Catalog) -> None:
    text = GOOD.replace("{role: read-only-analytics}", "{role: root}").replace(
        "  - provision: analyst", "  - provision: {agent: analyst, expect: refused}"
    )
    _load(tmp_path, text, catalog)


def test_every_published_scenario_passes_the_check(catalog: Catalog) -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        load_scenario(path, catalog)


REPLAY = """\
name: replay
description: d
agents:
  bound: {role: read-only-analytics, binding: dpop}
steps:
  - provision: bound
  - replay_token: {agent: bound, caller: thief, tool: analytics.query, expect: "401", error: invalid_dpop_proof}
"""


def test_a_replay_by_an_undeclared_caller_or_an_unknown_tool_or_binding_fails_at_its_line(
    tmp_path: Path, catalog: Catalog
) -> None:
    with pytest.raises(FileError, match="replay_token names 'thief', which the scenario does not declare") as raised:
        _load(tmp_path, REPLAY, catalog)
    assert raised.value.line == 7
    declared = REPLAY.replace("steps:", "  thief: {role: read-only-analytics, binding: dpop}\nsteps:")
    _load(tmp_path, declared, catalog)
    with pytest.raises(FileError, match=r"unknown tool 'analytics\.qurey'"):
        _load(tmp_path, declared.replace("tool: analytics.query", "tool: analytics.qurey"), catalog)
    with pytest.raises(FileError) as binding:
        _load(tmp_path, declared.replace("binding: dpop}\nsteps", "binding: tls}\nsteps"), catalog)
    assert binding.value.line == 5 and "binding" in str(binding.value)
