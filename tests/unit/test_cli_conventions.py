"""What every command has (help text), --version, and the table or JSON of listing commands (no servers)."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import pytest
import typer.main

from sandbox import __version__
from sandbox.broker import tables
from sandbox.cli import app
from sandbox.cli_errors import run_command_line
from sandbox.cli_output import emit
from sandbox.config import DEFAULT_KEYCLOAK_VERSION


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    children = getattr(command, "commands", None)
    if not children:
        return [(path, command)]
    return [leaf for name, child in children.items() for leaf in _leaves(child, (*path, name))]


LEAVES = _leaves(typer.main.get_command(app))


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(path) for path, _ in LEAVES])
def test_every_command_and_option_has_help(path: tuple[str, ...], command: Any) -> None:
    assert (command.help or "").strip(), f"mcp-sandbox {' '.join(path)} has no help text"
    for parameter in command.params:
        if parameter.param_type_name == "option":
            assert (parameter.help or "").strip(), f"mcp-sandbox {' '.join(path)} {parameter.opts[0]} has no help"


def test_version_names_the_project_keycloak_and_the_sdk(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command_line(app, ["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"mcp-sandbox {__version__} ")
    assert f"Keycloak {DEFAULT_KEYCLOAK_VERSION}" in line and f"mcp SDK {version('mcp')}" in line


LISTING = [
    ("tenants", "list"),
    ("agents", "list"),
    ("agents", "roles"),
    ("agents", "review-queue"),
    ("servers", "list"),
    ("audit", "show"),
]


@pytest.mark.parametrize("path", LISTING, ids=[" ".join(p) for p in LISTING])
def test_listing_commands_take_output_table_or_json(path: tuple[str, ...]) -> None:
    command = dict(LEAVES)[path]
    option = next(p for p in command.params if "--output" in p.opts)
    assert "-o" in option.opts


AGENT = {
    "id": "4f1c",
    "name": "invoice-bot",
    "role": "invoice-writer",
    "environment": "staging",
    "status": "active",
    "mode": "autonomous",
    "credential_type": "client_secret",
    "created_at": "2026-01-01T00:00:00Z",
}


def test_a_table_shows_the_columns_and_json_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    emit([AGENT], "table", tables.AGENTS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "role", "environment", "status", "mode", "credential", "created"]
    assert "invoice-bot" in lines[-1] and "client_secret" in lines[-1]
    emit([AGENT], "json", tables.AGENTS)
    assert json.loads(capsys.readouterr().out) == [AGENT]


def test_a_table_shows_text_as_text_and_says_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    emit([{**AGENT, "name": "[bold]x[/]"}], "table", tables.AGENTS)
    assert "[bold]x[/]" in capsys.readouterr().out
    emit([], "table", tables.AGENTS)
    assert capsys.readouterr().out.strip() == "(none)"


def test_without_output_a_pipe_gets_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit([AGENT], None, tables.AGENTS)  # captured output is not a terminal
    assert json.loads(capsys.readouterr().out) == [AGENT]


def test_roles_table_has_a_row_per_role(capsys: pytest.CaptureFixture[str]) -> None:
    roles = {"log-reader": {"environments": {"staging": ["mcp:tool:logs.read"]}, "max_token_lifetime": 300}}
    emit(tables.role_rows(roles), "table", tables.ROLES)
    out = capsys.readouterr().out
    assert "log-reader" in out and "staging: mcp:tool:logs.read" in out


def test_jsonl_is_one_object_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit([AGENT, {**AGENT, "id": "5e2d"}], "jsonl", tables.AGENTS)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["4f1c", "5e2d"]


def test_audit_show_refuses_a_since_that_is_not_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command_line(app, ["audit", "show", "-t", "acme", "--since", "yesterday"]) == 1
    assert capsys.readouterr().err.startswith("error: --since 'yesterday' is not an ISO 8601 time")
