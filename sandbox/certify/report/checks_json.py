"""The official MCP conformance suite's ``checks.json``: a JSON array of ConformanceCheck objects.

``id``, ``name``, ``description``, ``status`` (SUCCESS, FAILURE, WARNING, SKIPPED), ``timestamp``,
``specReferences`` (``{id, url}``), ``errorMessage`` when it did not succeed, and in ``details`` what certify
adds: the check's ``level``, its ``remarks`` (what a result means, e.g. what a passing check measured), its
``findings`` (each expectation, met or not, and what was observed), its
``evidence`` (each exchange, tokens shown as header and claims only) and ``expected_failure``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox.certify.baseline import SCENARIO
from sandbox.certify.model import CheckResult


def check_entry(result: CheckResult, server: str) -> dict[str, Any]:
    spec = result.spec
    entry: dict[str, Any] = {
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "status": result.status,
        "timestamp": result.timestamp,
        "specReferences": [reference.as_dict() for reference in result.references],
        "details": {
            "level": spec.level,
            "expected_failure": result.expected_failure,
            "duration_seconds": result.duration,
            "remarks": result.remarks,
            "not_examined": result.unexamined,
            "findings": [finding.as_dict() for finding in result.findings],
            "evidence": [exchange.as_dict() for exchange in result.evidence],
        },
        "metadata": {"scenario": SCENARIO, "server": server, "revision": result.revision},
    }
    if result.message:
        entry["errorMessage"] = result.message
    return entry


def checks_json(results: list[CheckResult], server: str) -> str:
    return json.dumps([check_entry(result, server) for result in results], indent=2, default=str)


def write_checks_json(results: list[CheckResult], server: str, path: Path) -> None:
    path.write_text(checks_json(results, server) + "\n")
