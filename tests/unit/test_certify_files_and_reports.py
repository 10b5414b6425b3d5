"""certify's files and outputs without servers: manifests, the expected-failures baseline, verdicts, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from sandbox.certify.baseline import evaluate, load_expected_failures
from sandbox.certify.checks import CHECK_IDS, CHECKS, checks_for, run_order
from sandbox.certify.context import Context, ControlFailed, check
from sandbox.certify.evidence import KnownTokens
from sandbox.certify.manifest import default_manifest, load_manifest
from sandbox.certify.model import CheckResult, CheckSpec, Finding, rfc
from sandbox.certify.report.checks_json import checks_json
from sandbox.certify.report.html import html_report
from sandbox.certify.report.junit import junit_xml
from sandbox.certify.report.sarif import sarif
from sandbox.certify.revision import REVISIONS, Revision, Wire
from sandbox.certify.runner import judge, run_check
from sandbox.certify.summary import last_line, root_causes, shorten
from sandbox.config import load_settings
from sandbox.errors import SandboxError
from sandbox.yamlfile import FileError

REQUIREMENTS = Path(__file__).parents[2] / "docs" / "mcp-auth-requirements.md"
SERVER = "http://127.0.0.1:1/mcp"


def requirement_rows(revision: str) -> list[tuple[str, str]]:
    """(id, level) of each row of the revision's table in docs/mcp-auth-requirements.md."""
    section = REQUIREMENTS.read_text().split(f"\n## {revision}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    return [(cells[0].strip(), cells[1].strip()) for cells in rows[1:]]


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# The checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
def test_one_check_per_requirements_row_of_the_revision_in_its_order_with_its_level_and_a_source(
    revision: Revision,
) -> None:
    checks = checks_for(revision)
    assert [(c.spec.id, c.spec.level) for c in checks] == requirement_rows(revision)
    for item in checks:
        references = [r.at(revision) for r in item.spec.references]
        assert references and all(r.url.startswith("https://") and "{" not in r.url for r in references)
        assert all(revision in r.url for r in references if "modelcontextprotocol.io" in r.url)
    order = [c.spec.id for c in run_order(checks)]
    assert (
        order[0] == "positive" and order[-1] == "no-passthrough" and sorted(order) == sorted(c.spec.id for c in checks)
    )


def test_every_check_belongs_to_a_revision_and_the_new_ones_to_2026_07_28_only() -> None:
    assert set(CHECK_IDS) == {c.spec.id for revision in REVISIONS for c in checks_for(revision)}
    legacy = {c.spec.id for c in checks_for("2025-11-25")}
    stateless = {c.spec.id for c in checks_for("2026-07-28")}
    assert legacy - stateless == {"session-binding"}
    assert stateless - legacy == {
        "stateless-auth", "header-body-match", "private-cache", "request-state", "single-challenge",
        "no-offline-access",
    }  # fmt: skip


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
    world = SimpleNamespace(url=SERVER, manifest=None, known=KnownTokens(), wire=Wire("2026-07-28"))
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
        "analytics.query", "analytics.export", "invoices.list", "invoices.create", "logs.read", "deploy.status",
        "deploy.trigger",
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


def test_the_exit_code_counts_unexpected_failures_and_stale_entries_and_strict_counts_warnings() -> None:
    results = [
        result("positive", "SUCCESS"),
        result("401-audience", "FAILURE"),
        result("403-scope", "WARNING"),
        result("revocation", "FAILURE"),
        result("no-passthrough", "SKIPPED"),
    ]
    assert evaluate(results, set()).unexpected == ["401-audience", "revocation"]  # a SHOULD only warns
    assert evaluate(results, set()).exit_code == 1
    assert evaluate(results, set(), strict=True).unexpected == ["401-audience", "403-scope", "revocation"]
    allowed = evaluate(results, {"401-audience", "403-scope", "revocation"}, strict=True)
    assert allowed.exit_code == 0 and allowed.expected == ["401-audience", "403-scope", "revocation"]
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
    assert "mcp-sandbox certify: failed" in page and "not certified for 2026-07-28: MUST 1/2" in page


def test_a_spec_is_hashable_and_frozen() -> None:
    spec = CheckSpec("x", "MUST", "X", "x", ())
    with pytest.raises(AttributeError):
        spec.id = "y"  # type: ignore[misc]
    assert SandboxError("a", "b").fix == "b"


def test_the_last_line_counts_each_level_and_names_what_was_not_examined_and_why() -> None:
    results = [
        result("positive", "SUCCESS"),
        result("401-audience", "SUCCESS"),
        result("403-scope", "WARNING"),
        result("tenant", "SUCCESS"),
        result("no-passthrough", "SKIPPED"),
    ]
    results[-1].message = "the manifest declares no upstream"
    line = last_line(results, evaluate(results, set()))
    assert line == (
        "certified for 2026-07-28: MUST 2/2, SHOULD 0/1, product 1/1; "
        "not examined: no-passthrough (the manifest declares no upstream)"
    )
    strict = last_line(results, evaluate(results, set(), strict=True))
    assert (
        strict.startswith("not certified for 2026-07-28 (strict): MUST 2/2, SHOULD 0/1")
        and "failed: 403-scope" in strict
    )
    every = last_line(results[:4], evaluate(results[:4], set()))
    assert every.startswith("certified for 2026-07-28:") and "not examined" not in every


def test_a_check_that_passed_in_part_only_is_named_on_the_last_line_and_in_checks_json() -> None:
    results = [result("positive", "SUCCESS"), result("jwks-rollover", "SUCCESS")]
    results[1].unexamined = ["a withdrawn key: the manifest declares a key_cache of 300 s, certify waits at most 60 s"]
    line = last_line(results, evaluate(results, set(), strict=True))
    assert line.startswith("certified for 2026-07-28 (strict): MUST 2/2") and line.endswith(
        "; partly examined: jwks-rollover (a withdrawn key: the manifest declares a key_cache of 300 s, certify "
        "waits at most 60 s)"
    )
    entry = json.loads(checks_json(results, SERVER))[1]
    assert entry["details"]["not_examined"] == results[1].unexamined
    skipped = result("request-state", "SKIPPED")
    skipped.unexamined = ["everything"]
    assert "partly examined" not in last_line([skipped], evaluate([skipped], set()))


def test_a_long_reason_is_shortened_on_a_word_boundary_for_the_console_only() -> None:
    reason = "word " * 60
    assert shorten(reason).endswith("word…") and len(shorten(reason)) <= 90
    failed = result("401-audience", "FAILURE")
    failed.message = "x" * 700 + " end"
    entry = json.loads(checks_json([failed], SERVER))[0]
    assert entry["errorMessage"] == failed.message  # whole in checks.json


def test_a_cascade_names_its_likely_root_cause_once() -> None:
    cascade = [result(check_id, "FAILURE") for check_id in ("401-invalid", "401-expired", "401-audience")]
    for failed in cascade:
        failed.findings = [Finding("control: served", True, "HTTP 200"), Finding("a bad token: 401", False, "HTTP 400")]
    causes = root_causes([result("positive", "SUCCESS"), *cascade])
    assert len(causes) == 1 and causes[0].startswith("every negative answer was 400 (3 checks")
    assert root_causes(cascade[:1]) == []  # one failure is no cascade
    refused = [result(check_id, "FAILURE") for check_id in ("401-invalid", "401-expired")]
    for failed in refused:
        failed.findings = [Finding("control: served", False, "HTTP 401")]
    assert [c.split(" (")[0] for c in root_causes(refused)] == ["the positive control failed in 2 checks"]


def test_sarif_has_a_rule_per_check_and_a_result_per_failure_or_warning() -> None:
    document = sarif(reported(), SERVER, Path("certify.yaml"))
    assert document["version"] == "2.1.0"
    run = document["runs"][0]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == [
        "positive",
        "401-audience",
        "403-scope",
        "tenant",
    ]
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [("401-audience", "error"), ("403-scope", "warning")]
    location = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert location == "certify.yaml"
    assert all(r["properties"]["revision"] == "2026-07-28" for r in run["results"])


def test_every_report_states_the_revision() -> None:
    results = reported()
    for item in results:
        item.revision = "2025-11-25"
    entries = json.loads(checks_json(results, SERVER))
    assert {e["metadata"]["revision"] for e in entries} == {"2025-11-25"}
    assert all(
        "/2025-11-25/" in ref["url"] for e in entries for ref in e["specReferences"] if "modelcontext" in ref["url"]
    )
    assert "2025-11-25" in junit_xml(results, SERVER).getroot().get("name", "")
    assert "MCP 2025-11-25" in html_report(results, SERVER, evaluate(results, set()))
