"""JUnit XML for scenario runs: a test suite per scenario, a test case per step (a CI shows which step failed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.scenarios.results import ScenarioResult, StepResult


def write_junit(results: list[ScenarioResult], path: Path) -> None:
    root = ET.Element("testsuites", name="mcp-sandbox scenarios", time=f"{sum(r.duration for r in results):.3f}")
    for result in results:
        _suite(root, result)
    for count in ("tests", "failures", "errors", "skipped"):
        root.set(count, str(sum(int(suite.get(count, "0")) for suite in root)))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _suite(root: ET.Element, result: ScenarioResult) -> None:
    scenario = result.scenario
    steps = result.steps
    suite = ET.SubElement(
        root, "testsuite", name=scenario.name, file=str(scenario.path), time=f"{result.duration:.3f}",
        tests=str(len(steps) + (1 if result.setup_error else 0)),
        failures=str(sum(step.outcome == "failed" for step in steps)),
        errors=str(sum(step.outcome == "error" for step in steps) + (1 if result.setup_error else 0)),
        skipped=str(sum(step.outcome in ("not run", "not supported") for step in steps)),
    )  # fmt: skip
    if result.setup_error:
        case = ET.SubElement(suite, "testcase", classname=scenario.name, name="set-up", file=str(scenario.path))
        ET.SubElement(case, "error", message=result.setup_error).text = result.setup_error
    for step in steps:
        _case(suite, scenario.name, str(scenario.path), step)


def _case(suite: ET.Element, scenario: str, file: str, step: StepResult) -> None:
    case = ET.SubElement(
        suite, "testcase", classname=scenario, name=step.step.label(), file=file, line=str(step.step.line),
        time=f"{step.duration:.3f}",
    )  # fmt: skip
    if step.outcome in ("failed", "error"):
        tag = "failure" if step.outcome == "failed" else "error"
        ET.SubElement(case, tag, message=step.describe()).text = step.describe()
    elif step.outcome == "not supported":  # neither a pass nor a failure: the IdP lacks what the step needs
        ET.SubElement(case, "skipped", message=step.message or step.describe())
    elif step.outcome == "not run":
        ET.SubElement(case, "skipped", message="not run: an earlier step of the scenario did not pass")
