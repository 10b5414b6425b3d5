"""The targets table: each row one figure of the run, its target, what was measured and whether it was met.

The rows are the project's performance targets, in one place. Each row reads its figure from the run's results
(``None`` when the run did not produce it: a benchmark not asked for, one that failed, or a figure no benchmark
measures yet, each said in ``note``). A row whose target is "report" is never judged: ``target_met`` is null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: How a measured number is compared with the target's number.
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": lambda measured, limit: measured < limit,
    "<=": lambda measured, limit: measured <= limit,
    ">=": lambda measured, limit: measured >= limit,
}


@dataclass(frozen=True)
class TargetRow:
    benchmark: str
    figure: str
    target: str  # as the table says it
    path: tuple[str, ...]  # where the figure is in the benchmark's results
    unit: str
    compare: str | None = None  # None: a "report" row, never judged
    limit: float | None = None
    why_missed_path: tuple[str, ...] | None = None  # the benchmark's own measured explanation, when it has one


ROWS: tuple[TargetRow, ...] = (
    TargetRow(
        "revocation",
        "jwt+events, revoke request → first 401, p99, 8 concurrent",
        "< 150 ms",
        ("modes", "jwt+events", "time_to_401_from_revoke_request", "p99"),
        "ms",
        "<",
        150,
        ("modes", "jwt+events", "why_missed"),
    ),
    TargetRow(
        "auth-overhead",
        "jwt p50 ratio against the same server without auth",
        "≤ 1.05",
        ("jwt_vs_no_auth", "p50_ratio"),
        "",
        "<=",
        1.05,
        ("jwt_vs_no_auth", "why_missed"),
    ),
    TargetRow(
        "auth-overhead",
        "ours against the mcp SDK's own bearer middleware with an equivalent verifier, p50 ratio",
        "≤ 1.0",
        ("jwt_vs_sdk_bearer", "p50_ratio"),
        "",
        "<=",
        1.0,
        ("jwt_vs_sdk_bearer", "why_missed"),
    ),
    TargetRow(
        "provisioning",
        "broker vs Keycloak direct, lifecycle ratio",
        "≥ 0.8",
        ("broker_vs_direct", "lifecycle_ratio"),
        "",
        ">=",
        0.8,
        ("broker_vs_direct", "why_missed"),
    ),
    TargetRow(
        "stack-start",
        "warm up to ready, whole stack",
        "< 12 s",
        ("warm", "seconds_to_ready"),
        "s",
        "<",
        12,
        ("warm", "why_missed"),
    ),
    TargetRow(
        "stack-start",
        "ours warm against Keycloak start-dev on an empty database, ratio",
        "report",
        ("warm_vs_keycloak_start_dev", "ratio"),
        "",
    ),
    TargetRow(
        "cost-growth",
        "per-agent provision time at 10,000 agents in one tenant against at 100",
        "≤ 1.5 times",
        ("provision_at_10000_vs_100", "ratio"),
        "times",
        "<=",
        1.5,
    ),
    TargetRow(
        "cost-growth",
        "token grants/s at 10,000 agents against at 100",
        "≥ 0.8 times",
        ("grants_at_10000_vs_100", "ratio"),
        "times",
        ">=",
        0.8,
    ),
    TargetRow(
        "cost-growth",
        "MCP server memory with 10,000 revocations held",
        "report, bounded",
        ("mcp_server_rss_with_10000_revocations_mib",),
        "MiB",
    ),
    TargetRow(
        "suite",
        "make test wall time, idle machine",
        "< 6 min",
        ("make_test_minutes",),
        "min",
        "<",
        6,
        ("why_missed",),
    ),
    TargetRow(
        "certify",
        "whole certify run against the reference server, slowest revision's median, warm stack",
        "< 20 s",
        ("slowest_revision_median", "seconds"),
        "s",
        "<",
        20,
        ("slowest_revision_median", "why_missed"),
    ),
)


@dataclass(frozen=True)
class TargetResult:
    benchmark: str
    figure: str
    target: str
    measured: float | None
    unit: str
    target_met: bool | None  # None: a "report" row, or nothing measured
    note: str  # why not judged, why not measured, or why missed (from the run's measurements)


def _at(figures: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(figures, dict) or key not in figures:
            return None
        figures = figures[key]
    return figures


def judge(row: TargetRow, results: dict[str, Any]) -> TargetResult:
    figures = results.get(row.benchmark)
    measured = _at(figures, row.path) if figures is not None else None
    if not isinstance(measured, int | float) or isinstance(measured, bool):
        if figures is None:
            why = f"not measured: the {row.benchmark} benchmark did not run"
        elif "error" in figures:
            why = f"not measured: the {row.benchmark} benchmark failed ({figures['error']})"
        else:
            said = _at(figures, ("not_measured", row.path[0]))  # a benchmark's word on why it has no such figure
            said = said or (_at(figures, (*row.path[:-1], "note")) if len(row.path) > 1 else None)
            why = str(said) if said else f"not measured: the {row.benchmark} benchmark did not produce it in this run"
        return TargetResult(row.benchmark, row.figure, row.target, None, row.unit, None, why)
    if row.compare is None or row.limit is None:
        return TargetResult(row.benchmark, row.figure, row.target, measured, row.unit, None, "reported, not judged")
    met = COMPARE[row.compare](measured, row.limit)
    why = ""
    if not met:
        explained = _at(figures, row.why_missed_path) if row.why_missed_path else None
        why = str(explained) if explained else "no measured explanation recorded"
    return TargetResult(row.benchmark, row.figure, row.target, measured, row.unit, met, why)


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of the targets table, judged against the run's results, as JSON-ready records."""
    return [asdict(judge(row, results)) for row in ROWS]


def normalized(row: dict[str, Any]) -> float | None:
    """How far the measured figure is from its target, as a multiple where 1 is the target and < 1 is on the
    good side; None for rows not judged."""
    spec = next(r for r in ROWS if r.figure == row["figure"] and r.benchmark == row["benchmark"])
    if row["measured"] is None or spec.limit is None or spec.compare is None or spec.limit == 0:
        return None
    if spec.compare == ">=":
        return spec.limit / row["measured"] if row["measured"] else float("inf")
    return float(row["measured"]) / spec.limit
