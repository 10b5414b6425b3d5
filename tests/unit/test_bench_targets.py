"""The targets table: each row read from the run's results, judged, and rendered to Markdown and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.bench.registry import BenchContext, target
from sandbox.bench.runner import write_markdown, write_plot
from sandbox.bench.targets import ROWS, normalized, table
from sandbox.config import Settings


def _results() -> dict:
    return {
        "revocation": {
            "title": "R",
            "modes": {
                "jwt+events": {
                    "time_to_401_from_revoke_request": {"p99": 393.0},
                    **target("p99 < 150 ms", "p99 393 ms", False, "the IdP disable took 300 ms of it"),
                }
            },
        },
        "auth-overhead": {"title": "A", "jwt_vs_no_auth": {"p50_ratio": 1.02}},
        "provisioning": {"title": "P", "error": "RuntimeError: boom"},
        "stack-start": {"title": "S", "warm": {"seconds_to_ready": 11.0}, "warm_vs_keycloak_start_dev": {"ratio": 0.7}},
    }


def _rows() -> dict[tuple[str, str], dict]:
    return {(row["benchmark"], row["figure"]): row for row in table(_results())}


def test_every_row_of_the_targets_table_has_target_measured_and_target_met() -> None:
    rows = table(_results())
    assert len(rows) == len(ROWS) == 11
    for row in rows:
        assert {"target", "measured", "target_met"} <= row.keys()
    json.dumps(rows)  # JSON-ready as it is


def test_a_missed_row_carries_the_benchmarks_measured_explanation() -> None:
    row = _rows()[("revocation", ROWS[0].figure)]
    assert row["measured"] == 393.0 and row["target_met"] is False
    assert row["note"] == "the IdP disable took 300 ms of it"


def test_a_met_row_is_met_and_a_limit_is_compared_the_right_way() -> None:
    rows = _rows()
    assert rows[("auth-overhead", ROWS[1].figure)]["target_met"] is True  # 1.02 <= 1.05
    assert rows[("stack-start", ROWS[4].figure)]["target_met"] is True  # 11 s < 12 s
    slow = table({"stack-start": {"warm": {"seconds_to_ready": 12.0}}})
    assert next(r for r in slow if r["figure"] == ROWS[4].figure)["target_met"] is False  # not under 12 s


def test_a_report_row_is_never_judged_and_says_so() -> None:
    row = _rows()[("stack-start", ROWS[5].figure)]
    assert row["measured"] == 0.7 and row["target_met"] is None
    assert row["note"] == "reported, not judged"


def test_a_figure_not_measured_says_why_and_is_not_judged() -> None:
    rows = _rows()
    failed = rows[("provisioning", ROWS[3].figure)]
    assert failed["measured"] is None and failed["target_met"] is None
    assert "failed (RuntimeError: boom)" in failed["note"]
    suite = rows[("suite", ROWS[9].figure)]
    assert suite["target_met"] is None and suite["note"] == "not measured: the suite benchmark did not run"
    assert "did not run" in table({})[0]["note"]


def test_normalized_puts_the_target_at_one_and_the_good_side_below() -> None:
    rows = _rows()
    assert normalized(rows[("revocation", ROWS[0].figure)]) == 393.0 / 150
    assert normalized(rows[("stack-start", ROWS[5].figure)]) is None  # a report row
    at_least = {"benchmark": "provisioning", "figure": ROWS[3].figure, "measured": 1.6}
    assert normalized(at_least) == 0.5  # twice the ">= 0.8" is on the good side


def _report() -> dict:
    results = _results()
    machine = {"cores": 2, "python": "3", "platform": "p", "keycloak": "26", "load_average_at_start": [1, 1, 1]}
    machine["load_average_at_end"] = [1, 1, 1]
    return {
        "command": "mcp-sandbox bench",
        "quick": True,
        "date": "d",
        "seconds": 1.0,
        "machine": machine,
        "results": results,
        "targets": table(results),
    }


def test_markdown_renders_the_targets_table_row_for_row_from_the_json(tmp_path: Path) -> None:
    report = _report()
    page_path = tmp_path / "RESULTS.md"
    write_markdown(report, page_path, None)
    page = page_path.read_text()
    section = page.split("## Targets\n\n", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()[2:]  # after the header and its rule
    assert len(lines) == len(report["targets"])
    for line, row in zip(lines, report["targets"], strict=True):
        assert line.startswith(f"| {row['benchmark']} | {row['figure']} | {row['target']} |")
    assert "| 393.0 ms | **no** | the IdP disable took 300 ms of it |" in page
    assert "| 0.7 | n/a | reported, not judged |" in page
    assert "| not measured | n/a | not measured:" in page


def test_the_plot_marks_the_targets(tmp_path: Path) -> None:
    context = BenchContext(Settings(), quick=True, distributions={"x": [1.0, 2.0, 3.0]})
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    write_plot(context, plain)
    write_plot(context, marked, _report())
    assert marked.read_bytes().startswith(b"\x89PNG")
    assert marked.read_bytes() != plain.read_bytes()


def test_the_rotation_ratio_is_per_pair_of_neighbouring_phases() -> None:
    from sandbox.bench.rotation import PHASES, _median, _pair_ratios

    assert sum(PHASES) >= 5  # at least 5 rotation phases, each between two without
    phases = (False, True, False, True, False)
    # without: 100, 80, 120; during: 90 (beside 100 and 80), 50 (beside 80 and 120)
    assert _pair_ratios(phases, [100.0, 80.0, 120.0], [90.0, 50.0]) == [1.0, 0.5]
    assert _median([1.0, 0.5, 0.7]) == 0.7
