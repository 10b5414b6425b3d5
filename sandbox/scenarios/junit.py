"""JUnit XML for scenario runs: one test case per scenario, its steps in the output."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.scenarios.results import ScenarioResult


def write_junit(results: list[ScenarioResult], path: Path) -> None:
    suite = ET.Element(
        "testsuite",
        name="mcp-sandbox scenarios",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if r.first_problem and r.first_problem.outcome == "failed")),
        errors=str(
            sum(1 for r in results if r.setup_error or (r.first_problem and r.first_problem.outcome == "error"))
        ),
        skipped=str(sum(1 for r in results if r.not_supported)),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname="scenarios", name=result.scenario.name, file=str(result.scenario.path),
            time=f"{result.duration:.3f}",
        )  # fmt: skip
        problem = result.first_problem
        if result.setup_error:
            ET.SubElement(case, "error", message=result.setup_error)
        elif result.not_supported is not None:  # neither a pass nor a failure: the IdP lacks what it needs
            ET.SubElement(case, "skipped", message=str(result.not_supported.message))
        elif problem is not None:
            tag = "failure" if problem.outcome == "failed" else "error"
            ET.SubElement(case, tag, message=problem.describe()).text = problem.describe()
        ET.SubElement(case, "system-out").text = "\n".join(step.describe() for step in result.steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
