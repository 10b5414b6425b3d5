"""Scenario runs through the command line: a broken expectation says which step, what was expected, what happened."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from sandbox.pytest_plugin import SandboxStack

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")

BROKEN = """\
name: broken-expectation
description: A reader is (wrongly) expected to create an invoice.
agents:
  reader: {role: read-only-analytics}
steps:
  - provision: reader
  - call_tool: {agent: reader, tool: invoices.create, expect: allowed}
  - revoke: reader
"""


def test_a_broken_expectation_fails_naming_the_step_the_expected_and_the_actual(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(BROKEN)
    junit, html = tmp_path / "junit.xml", tmp_path / "report.html"
    result = subprocess.run(
        [MCP_SANDBOX, "run", str(scenario), "--junit-xml", str(junit), "--report", str(html)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert result.returncode == 1
    assert "0 of 1 scenarios passed" in result.stdout
    failure = next(line for line in result.stderr.splitlines() if line.startswith("FAILED"))
    assert "step 2 (call_tool: reader invoices.create expect allowed) at line 7" in failure
    assert "expected allowed from jwt+events, got 403" in failure and 'error="insufficient_scope"' in failure
    assert "step 3 (revoke: reader expect revoked) at line 8: not run" in result.stderr

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "broken-expectation"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [
        "step 1 (provision: reader expect active)",
        "step 2 (call_tool: reader invoices.create expect allowed)",
        "step 3 (revoke: reader expect revoked)",
    ]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = cases["step 2 (call_tool: reader invoices.create expect allowed)"].find("failure")
    assert failure is not None and "expected allowed from jwt+events, got 403" in (failure.get("message") or "")
    assert cases["step 1 (provision: reader expect active)"].find("failure") is None
    assert cases["step 3 (revoke: reader expect revoked)"].find("skipped") is not None
    page = html.read_text()
    assert "broken-expectation — failed" in page and "expected allowed from jwt+events, got 403" in page


REFUSED = """\
name: refused-by-the-broker
description: An admin without a second factor provisions a production agent; the broker refuses it.
tenants:
  main:
    admins:
      carol: {mfa: false}
agents:
  reader: {role: read-only-analytics, environment: production}
steps:
  - provision: {agent: reader, by: carol}
"""


def test_a_broker_refusal_shows_the_brokers_cause_in_the_console_and_junit(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    scenario, junit = tmp_path / "refused.yaml", tmp_path / "junit.xml"
    scenario.write_text(REFUSED)
    result = subprocess.run(
        [MCP_SANDBOX, "run", str(scenario), "--junit-xml", str(junit)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ,
    )
    assert result.returncode == 1, result.stderr
    failure = next(line for line in result.stderr.splitlines() if line.startswith("FAILED"))
    assert "got refused (401 insufficient_user_authentication): " in failure, failure
    cause = failure.split("insufficient_user_authentication): ", 1)[1]
    assert len(cause) > 10, failure
    case = next(ET.parse(junit).getroot().iter("testcase"))
    message = case.find("failure").get("message") or ""  # type: ignore[union-attr]
    assert cause.split(";")[0] in message, message


def test_a_file_with_a_mistake_is_refused_before_anything_runs(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    good, bad = tmp_path / "a-good.yaml", tmp_path / "b-bad.yaml"
    good.write_text(BROKEN.replace("expect: allowed", 'expect: "403"'))
    bad.write_text(BROKEN.replace("revoke: reader", "revoke: writer"))
    result = subprocess.run(
        [MCP_SANDBOX, "run", str(tmp_path)], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert result.returncode == 1
    assert f"{bad}:8: revoke names 'writer', which the scenario does not declare" in result.stderr
    assert "scenarios passed" not in result.stdout  # nothing ran, not even the good file


def test_a_name_the_stacks_policy_does_not_know_is_refused_before_anything_runs(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    bad = tmp_path / "unknown-role.yaml"
    bad.write_text(BROKEN.replace("read-only-analytics", "read-only-analitics"))
    result = subprocess.run([MCP_SANDBOX, "run", str(bad)], capture_output=True, text=True, timeout=120, env=os.environ)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad}:4: agent 'reader': unknown role 'read-only-analitics'")
    assert "scenarios passed" not in result.stdout


REPLAYED = """\
name: replay-expected-to-work
description: A DPoP-bound agent's token, taken by another agent, is (wrongly) expected to be served to it.
revocation_modes: [jwt]
agents:
  bound: {role: read-only-analytics, binding: dpop}
  thief: {role: read-only-analytics, binding: dpop}
steps:
  - provision: bound
  - provision: thief
  - get_token: {agent: bound, binding: dpop}
  - replay_token: {agent: bound, caller: thief, expect: allowed}
"""


def test_a_replayed_dpop_token_expected_to_work_fails_naming_the_proof_the_server_refused(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    scenario = tmp_path / "replayed.yaml"
    scenario.write_text(REPLAYED)
    result = subprocess.run(
        [MCP_SANDBOX, "run", str(scenario)], capture_output=True, text=True, timeout=600, env=os.environ
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failure = next(line for line in result.stderr.splitlines() if line.startswith("FAILED"))
    assert "step 4 (replay_token: bound analytics.query caller=thief expect allowed) at line 11" in failure, failure
    assert "expected allowed from jwt, got 401" in failure, failure
    assert 'DPoP error="invalid_dpop_proof"' in failure and "signed by another key" in failure, failure
