"""JUnit XML: one test case per check. FAILURE is a failure (an expected one is reported skipped, saying so),
SKIPPED is skipped, WARNING passes with the warning in its output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.certify.model import CheckResult


def junit_xml(results: list[CheckResult], server: str) -> ET.ElementTree:
    failures = [r for r in results if r.status == "FAILURE" and not r.expected_failure]
    skipped = [r for r in results if r.status == "SKIPPED" or (r.status == "FAILURE" and r.expected_failure)]
    suite = ET.Element(
        "testsuite",
        name=f"mcp-sandbox certify {server} (MCP {results[0].revision if results else '-'})",
        tests=str(len(results)),
        failures=str(len(failures)),
        errors="0",
        skipped=str(len(skipped)),
        time=f"{sum(r.duration for r in results):.3f}",
    )
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"certify.{result.spec.level}", name=result.id, time=f"{result.duration:.3f}"
        )
        if result.status == "FAILURE" and not result.expected_failure:
            ET.SubElement(case, "failure", message=result.message, type=result.spec.level).text = result.message
        elif result.status == "FAILURE":
            ET.SubElement(case, "skipped", message=f"expected failure: {result.message}")
        elif result.status == "SKIPPED":
            ET.SubElement(case, "skipped", message=result.message)
        lines = [f"{result.status}: {result.spec.name}"]
        if result.status == "WARNING":
            lines.append(f"warning: {result.message}")
        lines += [f"note: {remark}" for remark in result.remarks]
        lines += [json.dumps(finding.as_dict()) for finding in result.findings]
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    return ET.ElementTree(suite)


def write_junit(results: list[CheckResult], server: str, path: Path) -> None:
    junit_xml(results, server).write(path, encoding="utf-8", xml_declaration=True)
