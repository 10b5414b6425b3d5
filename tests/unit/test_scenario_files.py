"""Scenario files: every problem is reported with file, line and what is expected there, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sandbox.scenarios.loader import load_scenario, scenario_files
from sandbox.scenarios.schema import schema_text
from sandbox.yamlfile import FileError

SCENARIOS = Path(__file__).parents[2] / "scenarios"
HEADER = "name: broken\ndescription: a scenario with one mistake\nagents:\n  reader: {role: read-only-analytics}\n"


def error_for(tmp_path: Path, text: str) -> FileError:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(FileError) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value)
    return caught.value


def test_an_unknown_step_names_its_line_and_the_steps_there_are(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER + "steps:\n  - provision: reader\n  - cal_tool: {agent: reader}\n")
    assert error.line == 7
    assert "unknown step 'cal_tool'" in str(error) and "call_tool" in str(error)


def test_a_bad_value_names_the_field_and_the_expected_values(tmp_path: Path) -> None:
    text = HEADER + "steps:\n  - call_tool:\n      agent: reader\n      tool: analytics.query\n      expect: 500\n"
    error = error_for(tmp_path, text)
    assert error.line == 9
    assert "steps[0].call_tool.expect is 500" in str(error) and "'allowed', '401', '403' or 'tool_error'" in str(error)


def test_a_misspelt_field_is_named(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER + "steps:\n  - get_token: {agent: reader, scope: [x]}\n")
    assert error.line == 6 and "steps[0].get_token.scope is not a known field" in str(error)


def test_an_undeclared_agent_is_named_with_the_declared_ones(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER + "steps:\n  - provision: writer\n")
    assert error.line == 6
    assert "'writer'" in str(error) and "declare it under `agents:` (known: reader)" in str(error)


def test_an_undeclared_admin_is_named(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER + "steps:\n  - approve: {agent: reader, by: mallory}\n")
    assert "'mallory'" in str(error) and "admins" in str(error)


def test_a_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER + "steps:\n  - provision: [reader\n")
    assert error.line >= 6 and "not valid YAML" in str(error)


def test_a_scenario_without_steps_is_refused(tmp_path: Path) -> None:
    error = error_for(tmp_path, HEADER)
    assert "`steps` is missing or empty" in str(error)


def test_a_header_mistake_is_reported_at_its_line(tmp_path: Path) -> None:
    text = HEADER.replace("read-only-analytics}", "read-only-analytics, environment: prod}") + "steps:\n  - wait: 1\n"
    error = error_for(tmp_path, text)
    assert error.line == 4 and "agents.reader.environment is 'prod'" in str(error)


def test_shorthand_and_full_forms_mean_the_same(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(HEADER + "steps:\n  - provision: reader\n  - provision: {agent: reader}\n")
    scenario = load_scenario(path)
    assert scenario.steps[0].arguments == scenario.steps[1].arguments
    assert [step.line for step in scenario.steps] == [6, 7]


def test_every_shipped_scenario_loads_and_matches_the_published_schema() -> None:
    schema = json.loads((SCENARIOS / "scenario.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = scenario_files([SCENARIOS])
    assert len(files) >= 13
    for path in files:
        load_scenario(path)
        errors = [error.message for error in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path, errors)


def test_the_published_schema_is_the_one_the_code_makes() -> None:
    assert (SCENARIOS / "scenario.schema.json").read_text() == schema_text(), (
        "run: mcp-sandbox schema > scenarios/scenario.schema.json"
    )


def test_the_schema_refuses_what_the_loader_refuses(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    broken = yaml.safe_load(HEADER + "steps:\n  - call_tool: {agent: reader, tool: x, expect: sometimes}\n")
    assert list(validator.iter_errors(broken))
