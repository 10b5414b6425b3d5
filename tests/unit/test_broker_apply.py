"""Onboarding as code: the plan that turns the broker's agents into the declared ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.admin.apply import AgentsFile, DesiredAgent, load_agents_file, make_plan
from sandbox.yamlfile import FileError


def declared(*agents: tuple[str, str, str]) -> AgentsFile:
    return AgentsFile(
        tenant="acme",
        agents=[DesiredAgent(name=n, owner="o", role=r, environment=e) for n, r, e in agents],
    )


def live(name: str, role: str, environment: str = "staging", *, source: str = "apply", status: str = "active") -> dict:
    return {
        "id": f"id-{name}",
        "name": name,
        "role": role,
        "environment": environment,
        "source": source,
        "status": status,
    }


def describe(current: list[dict[str, Any]], *agents: tuple[str, str, str]) -> list[str]:
    return [change.describe() for change in make_plan(declared(*agents), current).changes]


def test_creates_what_is_missing() -> None:
    assert describe([], ("a", "log-reader", "staging")) == ["+ create a (log-reader/staging)"]


def test_matching_agents_plan_nothing() -> None:
    plan = make_plan(declared(("a", "log-reader", "staging")), [live("a", "log-reader")])
    assert plan.empty and "no changes" in plan.describe()


def test_changes_role_or_environment() -> None:
    assert describe([live("a", "log-reader")], ("a", "invoice-writer", "staging")) == [
        "~ change role a: log-reader/staging -> invoice-writer/staging"
    ]
    assert describe([live("a", "log-reader")], ("a", "log-reader", "production")) == [
        "~ change role a: log-reader/staging -> log-reader/production"
    ]


def test_revokes_only_agents_apply_made() -> None:
    current = [live("gone", "log-reader"), live("by-hand", "log-reader", source="api")]
    assert describe(current) == ["- revoke gone (log-reader/staging)"]


def test_revoked_agents_are_recreated_not_changed() -> None:
    current = [live("a", "log-reader", status="revoked")]
    assert describe(current, ("a", "log-reader", "staging")) == ["+ create a (log-reader/staging)"]


def test_agents_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(
        "tenant: acme\nagents:\n  - name: a\n    owner: o\n    role: r\n    environment: staging\n"
        "  - name: a\n    owner: o\n    role: r\n    environment: staging\n"
    )
    with pytest.raises(FileError) as caught:
        load_agents_file(path)
    assert caught.value.line == 7 and "declared twice" in str(caught.value)
    path.write_text("tenant: acme\nagents:\n  - name: a\n    owner: o\n    role: r\n    enviroment: staging\n")
    with pytest.raises(FileError) as caught:
        load_agents_file(path)
    assert caught.value.line in (3, 6)
    assert "environment" in str(caught.value) or "enviroment" in str(caught.value)
