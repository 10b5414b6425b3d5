"""certify's files and outputs without servers: manifests, the expected-failures baseline, verdicts, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from sandbox.certify.baseline import evaluate, load_expected_failures
from sandbox.certify.checks import CHECK_IDS, CHECKS, run_order
from sandbox.certify.context import Context, ControlFailed, check
from sandbox.certify.evidence import KnownTokens
from sandbox.certify.manifest import default_manifest, load_manifest
from sandbox.certify.model import CheckResult, CheckSpec, Finding, rfc
from sandbox.certify.report.checks_json import checks_json
from sandbox.certify.report.html import html_report
from sandbox.certify.report.junit import junit_xml
from sandbox.certify.runner import judge, run_check
from sandbox.config import load_settings
from sandbox.errors import SandboxError
from sandbox.yamlfile import FileError

REQUIREMENT_ROWS = [
    "prm-served", "prm-content", "401-no-token", "401-www-authenticate", "401-scope-hint", "401-invalid",
    "401-expired", "401-audience", "401-issuer", "401-signature", "no-query-token", "403-scope", "tool-scope",
    "session-binding", "no-passthrough", "revocation", "tenant", "positive",
]  # fmt: skip
SERVER = "http://127.0.0.1:1/mcp"


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# The checks --------------------------------------------------------------------------------------------------


def test_one_check_per_requirements_row_in_its_order_each_with_a_level_and_a_source() -> None:
    assert CHECK_IDS == REQUIREMENT_ROWS
    for item in CHECKS:
        assert item.spec.level in ("MUST", "SHOULD", "product")
        assert item.spec.references and all(r.url.startswith("https://") for r in item.spec.references)
    order = [c.spec.id for c in run_order(CHECKS)]
    assert order[0] == "positive" and order[-1] == "no-passthrough" and sorted(order) == sorted(REQUIREMENT_ROWS)


@pytest.mark.parametrize(
    ("level", "findings", "status"),
    [
        ("MUST", [Finding("a", True)], "SUCCESS"),
        ("MUST", [Finding("a", True), Finding("b", False)], "FAILURE"),
        ("product", [Finding("b", False)], "FAILURE"),
        ("SHOULD", [Finding("b", False)], "WARNING"),
        ("MUST", [Finding("b", False, warning=True)], "WARNING"),
        ("MUST", [], "SUCCESS"),
    ],
)
def test_a_checks_findings_decide_its_status(level: str, findings: list[Finding], status: str) -> None:
    assert judge(level, findings)[0] == status


def run_fake(body) -> CheckResult:  # type: ignore[no-untyped-def]
    world = SimpleNamespace(url=SERVER, manifest=None, known=KnownTokens())
    item = check("x", "SHOULD", "X", "x", rfc(6750, "3", "t"))(body)
    return run_check(world, item)  # type: ignore[arg-type]


def test_a_failed_control_fails_even_a_should_check_and_a_skip_says_why() -> None:
    def control_fails(ctx: Context) -> None:
        ctx.control("the valid request is served", False, seen="HTTP 401")
        ctx.expect("never reached", True)

    failed = run_fake(control_fails)
    assert failed.status == "FAILURE" and "positive control failed" in failed.message
    assert [f.expectation for f in failed.findings] == ["control: the valid request is served"]
    skipped = run_fake(lambda ctx: ctx.skip("nothing to examine"))
    assert skipped.status == "SKIPPED" and skipped.message == "nothing to examine"


def test_a_server_that_cannot_be_reached_fails_the_check() -> None:
    def unreachable(ctx: Context) -> None:
        raise httpx.ConnectError("refused")

    result = run_fake(unreachable)
    assert result.status == "FAILURE" and "could not complete" in result.message
    assert ControlFailed("a", "b").what == "a"


# Manifests ---------------------------------------------------------------------------------------------------


def test_the_example_manifest_for_the_reference_server_loads() -> None:
    settings = load_settings()
    manifest = load_manifest(settings.fixtures_dir / "certify" / "reference-server.yaml", settings)
    assert manifest.tenants == ["acme", "globex"]
    assert manifest.tools["deploy.trigger"].scope == "mcp:tool:deploy.staging.write"
    assert manifest.revocation is not None and manifest.revocation.seconds == 2
    assert manifest.tenant_data is not None and manifest.tenant_data.read.tool == "invoices.list"


def test_without_a_manifest_the_tool_map_gives_tools_and_scopes() -> None:
    settings = load_settings()
    manifest = default_manifest(settings)
    assert set(manifest.tools) == {
        "analytics.query", "invoices.list", "invoices.create", "logs.read", "deploy.status", "deploy.trigger",
    }  # fmt: skip
    assert manifest.tools["deploy.trigger"].arguments == {"environment": "staging"}
    assert manifest.tools["deploy.trigger"].scope == "mcp:tool:deploy.staging.write"
    assert manifest.tenants == settings.tenants
    assert manifest.revocation is None and manifest.tenant_data is None and manifest.upstream is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("tools:\n  a:\n    scope: s\n    argumnts: {}\n", 4, "not a known field"),
        ("tools:\n  a:\n    arguments: {}\n", 2, "scope is missing"),
        ("tools:\n  a: {scope: s}\nrevocation:\n  mode: push\n", 4, "revocation.mode"),
        (
            "tools:\n  a: {scope: s}\ntenant_data:\n  write: {tool: b, arguments: {x: '{marker}'}}\n"
            "  read: {tool: a}\n",
            4,
            "not a tool above",
        ),
        ("tools:\n  a: {scope: s}\ntenant_data:\n  write: {tool: a}\n  read: {tool: a}\n", 4, "no {marker}"),
        ("tools:\n  a: {scope: s}\nupstream:\n  port: 9\n  forward_to: http://example.com\n", 5, "not an http(s) URL"),
        ("tools:\n  a: {scope: s\n", 3, "not valid YAML"),
    ],
)
def test_an_invalid_manifest_is_refused_with_its_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FileError) as refused:
        load_manifest(path, load_settings())
    assert refused.value.line == line, str(refused.value)
    assert str(refused.value).startswith(f"{path}:{line}: ") and words in str(refused.value)


def test_revocation_budgets_by_mode() -> None:
    from sandbox.certify.manifest import Revocation

    assert Revocation(mode="jwt+events").seconds == 2
    assert Revocation(mode="introspect").seconds == 10
    assert Revocation(mode="jwt").seconds == 30 and Revocation(mode="jwt").lifetime == 20
    assert Revocation(mode="jwt", token_lifetime=5, budget=8).seconds == 8


# Expected failures -------------------------------------------------------------------------------------------


def result(check_id: str, status: str) -> CheckResult:
    spec = next(c.spec for c in CHECKS if c.spec.id == check_id)
    return CheckResult(spec, status, "2026-01-01T00:00:00.000Z", "why" if status != "SUCCESS" else "")  # type: ignore[arg-type]


def test_expected_failures_in_the_official_format(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  - 401-audience\n  - mcp-auth:403-scope\n", "baseline.yml")
    assert load_expected_failures(path, CHECK_IDS) == {"401-audience", "403-scope"}
    assert load_expected_failures(write(tmp_path, "", "empty.yml"), CHECK_IDS) == set()
    with pytest.raises(FileError) as refused:
        load_expected_failures(write(tmp_path, "server:\n  - 401-audience\n  - 401-everything\n"), CHECK_IDS)
    assert refused.value.line == 3 and "not a certify check" in str(refused.value)


def test_the_exit_code_counts_unexpected_must_failures_and_stale_entries() -> None:
    results = [
        result("positive", "SUCCESS"),
        result("401-audience", "FAILURE"),
        result("403-scope", "WARNING"),
        result("revocation", "FAILURE"),
        result("no-passthrough", "SKIPPED"),
    ]
    assert evaluate(results, set()).unexpected == ["401-audience"]  # SHOULD and product never fail the run
    assert evaluate(results, set()).exit_code == 1
    allowed = evaluate(results, {"401-audience", "403-scope"})
    assert allowed.exit_code == 0 and allowed.expected == ["401-audience", "403-scope"]
    assert results[1].expected_failure
    stale = evaluate(results, {"401-audience", "positive", "no-passthrough"})
    assert stale.exit_code == 1 and stale.stale == ["positive"]  # a skipped entry is not stale


# Reports -----------------------------------------------------------------------------------------------------


def reported() -> list[CheckResult]:
    failed = result("401-audience", "FAILURE")
    failed.findings = [Finding("a token for another server: 401", False, "HTTP 200"), Finding("control: x", True)]
    return [result("positive", "SUCCESS"), failed, result("403-scope", "WARNING"), result("tenant", "SKIPPED")]


def test_checks_json_has_the_conformance_suites_shape() -> None:
    entries = json.loads(checks_json(reported(), SERVER))
    assert isinstance(entries, list) and len(entries) == 4
    for entry in entries:
        assert {"id", "name", "description", "status", "timestamp", "specReferences", "details"} <= set(entry)
        assert entry["status"] in ("SUCCESS", "FAILURE", "WARNING", "SKIPPED")
        assert all(set(ref) == {"id", "url"} for ref in entry["specReferences"])
        assert entry["details"]["level"] in ("MUST", "SHOULD", "product")
    assert "errorMessage" not in entries[0] and entries[1]["errorMessage"] == "why"
    assert entries[1]["details"]["findings"][0] == {
        "expectation": "a token for another server: 401",
        "met": False,
        "observed": "HTTP 200",
    }


def test_junit_counts_failures_and_skips() -> None:
    suite = junit_xml(reported(), SERVER).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = suite.find("testcase[@name='401-audience']/failure")
    assert failure is not None and failure.get("type") == "MUST"
    ET.fromstring(ET.tostring(suite))  # well-formed


def test_the_html_report_escapes_and_names_every_check() -> None:
    results = reported()
    results[1].message = "<script>alert(1)</script>"
    page = html_report(results, SERVER, evaluate(results, set()))
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert all(f'id="{r.id}"' in page for r in results)
    assert "not certified" not in page and "failed" in page


def test_a_spec_is_hashable_and_frozen() -> None:
    spec = CheckSpec("x", "MUST", "X", "x", ())
    with pytest.raises(AttributeError):
        spec.id = "y"  # type: ignore[misc]
    assert SandboxError("a", "b").fix == "b"
