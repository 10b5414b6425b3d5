"""A step that needs what the run's IdP lacks ends "not supported by <idp>: <reason>": a distinct outcome in the
results, the console summary, JUnit (a skipped case with that message) and HTML; never a pass."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox.idp.capabilities import BY_IDP, DESCRIPTIONS, HYDRA, KEYCLOAK
from sandbox.scenarios import library
from sandbox.scenarios.html import write_html
from sandbox.scenarios.junit import write_junit
from sandbox.scenarios.loader import load_scenario
from sandbox.scenarios.results import ScenarioResult
from sandbox.scenarios.runner import _run_steps

SCENARIO = """name: needs-exchange
description: a step that needs token exchange, between two that need nothing
agents:
  reader: {role: read-only-analytics}
steps:
  - wait: 1
  - wait: 2
  - wait: 3
"""


async def needs_exchange_on_the_second(context: object, args: object) -> dict[str, object]:
    if getattr(args, "seconds", 0) == 2:
        library.require(context, "token_exchange")  # type: ignore[arg-type]
    return {}


def run_on(idp: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScenarioResult:
    path = tmp_path / "needs-exchange.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    monkeypatch.setitem(library.LIBRARY, "wait", replace(library.LIBRARY["wait"], run=needs_exchange_on_the_second))
    context = SimpleNamespace(idp=idp, exercised=[])
    result = ScenarioResult(scenario, tenant="t")
    asyncio.run(_run_steps(context, scenario, result))  # type: ignore[arg-type]
    return result


def test_on_keycloak_the_step_runs_and_the_scenario_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_on("keycloak", tmp_path, monkeypatch)
    assert result.passed and result.not_supported is None
    # what each step needed of the IdP is kept with its outcome: the proof of the capability table
    assert [step.capabilities for step in result.steps] == [[], ["token_exchange"], []]


def test_on_hydra_the_step_is_not_supported_with_its_reason_and_nothing_after_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_on("hydra", tmp_path, monkeypatch)
    assert [step.outcome for step in result.steps] == ["passed", "not supported", "not run"]
    assert not result.passed and result.first_problem is None
    reason = "not supported by hydra: Hydra has no RFC 8693 token exchange grant"
    assert result.steps[1].message == reason and result.steps[1].capabilities == ["token_exchange"]
    assert result.summary() == f"needs-exchange: {reason} (step 2 (wait: 2s) at line 7)"
    assert reason in result.steps[1].describe()

    junit = tmp_path / "junit.xml"
    write_junit([result], junit)
    suite = ET.parse(junit).getroot()  # a test case per step: the unsupported one, and the one not run after it
    assert (suite.get("skipped"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    cases = list(suite.iter("testcase"))
    assert len(cases) == 3
    skipped = cases[1].find("skipped")
    assert skipped is not None and skipped.get("message") == reason

    report = tmp_path / "report.html"
    write_html([result], report)
    text = report.read_text()
    assert "0 of 1 scenarios passed, 1 not supported by the IdP" in text
    assert "needs-exchange — not supported</h2>" in text and "class=notsupported" in text
    assert "Hydra has no RFC 8693 token exchange grant" in text


def test_every_idp_declares_every_capability_with_a_reason_for_each_one_it_lacks() -> None:
    assert set(BY_IDP) == {"keycloak", "hydra"}
    for capabilities in (KEYCLOAK, HYDRA):
        assert set(capabilities.features) == set(DESCRIPTIONS)
        for name, support in capabilities.features.items():
            assert support.supported or support.note, f"{capabilities.idp} lacks {name} without saying why"
    assert all(KEYCLOAK.supports(name) for name in DESCRIPTIONS)
    assert not HYDRA.supports("dual_secret_rotation") and HYDRA.supports("key_rotation")
