"""SARIF 2.1.0, so a code-scanning service (GitHub's, for one) shows certify's findings beside the vendor's code.

One rule per check of the run's revision; one result per check that failed or warned (an expected failure is
reported suppressed). Findings point at the manifest when there is one (the file a vendor keeps in the
repository), else at the server's URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox import __version__
from sandbox.certify.model import CheckResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"FAILURE": "error", "WARNING": "warning"}


def _rule(result: CheckResult) -> dict[str, Any]:
    spec = result.spec
    references = result.references
    rule: dict[str, Any] = {
        "id": spec.id,
        "name": spec.name,
        "shortDescription": {"text": spec.name},
        "fullDescription": {"text": spec.description},
        "properties": {"level": spec.level, "revision": result.revision, "tags": ["security", "mcp-auth"]},
    }
    if references:
        rule["helpUri"] = references[0].url
        rule["help"] = {"text": "\n".join(f"{r.id}: {r.url}" for r in references)}
    return rule


def _location(artifact: str) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": {"uri": artifact}, "region": {"startLine": 1}}}


def sarif(results: list[CheckResult], server: str, manifest: Path | None = None) -> dict[str, Any]:
    artifact = manifest.as_posix() if manifest is not None else server
    findings = []
    for index, result in enumerate(results):
        if result.status not in LEVELS:
            continue
        finding: dict[str, Any] = {
            "ruleId": result.id,
            "ruleIndex": index,
            "level": LEVELS[result.status],
            "message": {"text": f"{result.spec.name}: {result.message}"},
            "locations": [_location(artifact)],
            "properties": {"server": server, "revision": result.revision, "status": result.status},
        }
        if result.expected_failure:
            finding["suppressions"] = [{"kind": "external", "justification": "listed in the expected-failures file"}]
        findings.append(finding)
    driver = {
        "name": "mcp-sandbox certify",
        "version": __version__,
        "informationUri": "https://modelcontextprotocol.io/specification",
        "rules": [_rule(result) for result in results],
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": findings}]}


def write_sarif(results: list[CheckResult], server: str, path: Path, manifest: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sarif(results, server, manifest), indent=2) + "\n")
