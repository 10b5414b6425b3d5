"""certify's bench row explains a slow run from its checks' own durations (checks.json), not a fixed sentence."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.bench.certify_run import check_seconds, why_slow


def test_each_checks_duration_is_read_from_the_report(tmp_path: Path) -> None:
    report = tmp_path / "checks.json"
    entries = [{"id": "a", "details": {"duration_seconds": 1.5}}, {"id": "b", "details": {"duration_seconds": 12}}]
    report.write_text(json.dumps(entries))
    assert check_seconds(report) == {"a": 1.5, "b": 12.0}


def test_the_why_names_the_longest_checks_and_what_lies_outside_them() -> None:
    checks = {"jwks-rollover": [11.0, 12.0, 13.0], "revocation": [4.0, 5.0, 6.0], "scopes": [1.0, 1.0, 1.0]}
    why = why_slow(20.0, checks, "2026-07-28: median 20.0 s")
    assert why.startswith("2026-07-28: median 20.0 s. In the slowest revision's runs")
    assert "jwks-rollover 12.0, revocation 5.0, scopes 1.0" in why
    assert "3 checks' times add up to 18.0 s against a median wall of 20.0 s, and 8.0 s" in why
    assert "side by side" not in why
    assert "side by side" in why_slow(10.0, checks, "x")


def test_no_durations_is_said() -> None:
    assert why_slow(20.0, {}, "x") == "x; the runs' reports gave no check durations"
