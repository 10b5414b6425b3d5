"""The scenario reports (no servers: results made from real scenario files): the HTML summary, timings,
versions and labels, and JUnit with a test case per step."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.scenarios.html import write_html
from sandbox.scenarios.junit import write_junit
from sandbox.scenarios.loader import load_scenario
from sandbox.scenarios.results import ScenarioResult, StepResult

SCENARIOS = Path(__file__).parents[2] / "scenarios"


def _results() -> list[ScenarioResult]:
    good = load_scenario(SCENARIOS / "00-quickstart.yaml")
    bad = load_scenario(SCENARIOS / "01-least-privilege.yaml")
    passed = ScenarioResult(good, "t1", [StepResult(step, "passed", 0.0032) for step in good.steps], duration=1.5)
    failing = [StepResult(bad.steps[0], "passed", 0.2)]
    failing.append(StepResult(bad.steps[1], "failed", 0.0421, expected="issued", actual="refused (401 x): why"))
    failing += [StepResult(step, "not run") for step in bad.steps[2:]]
    return [passed, ScenarioResult(bad, "t2", failing, duration=0.3)]


def test_the_html_report_opens_with_a_summary_failures_first(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    write_html(_results(), page, {"mcp-sandbox": "0.1.0", "Keycloak": "26.7.3", "revocation modes": "jwt, introspect"})
    text = page.read_text()
    summary = text[text.index("<table class=summary>") : text.index("</table>")]
    assert summary.index("least-privilege") < summary.index("quickstart")  # the failure first
    assert "<a href='#scenario-1-step-2'>step 2 (get_token" in summary and "refused (401 x): why" in summary
    assert "id=scenario-1-step-2" in text and "id=scenario-0" in text
    assert "Keycloak 26.7.3" in text and "revocation modes jwt, introspect" in text
    assert "3 ms" in text and "42 ms" in text and "0.00s" not in text


def test_steps_with_different_arguments_have_different_labels() -> None:
    steps = load_scenario(SCENARIOS / "01-least-privilege.yaml").steps
    labels = [step.label().split(" ", 2)[2] for step in steps]  # without the step number
    assert len(set(labels)) == len(labels), labels
    assert any("environment=production" in label for label in labels)


def test_junit_has_a_suite_per_scenario_and_a_case_per_step(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    results = _results()
    write_junit(results, path)
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["quickstart", "least-privilege"]
    assert [len(suite.findall("testcase")) for suite in suites] == [len(r.steps) for r in results]
    bad = suites[1]
    assert (bad.get("failures"), bad.get("skipped"), bad.get("errors")) == ("1", str(len(results[1].steps) - 2), "0")
    failure = bad.findall("testcase")[1].find("failure")
    assert failure is not None and "refused (401 x): why" in (failure.get("message") or "")
    assert bad.findall("testcase")[1].get("time") == "0.042"
    assert root.get("tests") == str(sum(len(r.steps) for r in results)) and root.get("failures") == "1"
