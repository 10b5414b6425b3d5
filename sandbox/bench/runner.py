"""Run benchmarks on the running stack and write their figures as JSON, a plot and a Markdown table."""

from __future__ import annotations

import importlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.bench.registry import BENCHMARKS, BenchContext
from sandbox.bench.targets import normalized, table
from sandbox.config import Settings
from sandbox.errors import SandboxError

#: Modules that register benchmarks, in the order results are reported.
MODULES = (
    "sandbox.bench.revocation",
    "sandbox.bench.auth_overhead",
    "sandbox.bench.provisioning",
    "sandbox.bench.token_issuance",
    "sandbox.bench.rotation",
    "sandbox.bench.cost_growth",  # late: it grows the tenant to thousands of agents, then revokes them all
    "sandbox.bench.peers",
    "sandbox.bench.certify_run",
    "sandbox.bench.suite",  # read from the newest `make test` run's record, not run here
    "sandbox.bench.stack_start",  # last: its own stacks' start and stop would weigh on what runs after
)


def available() -> list[str]:
    """Every benchmark's name, in the order of MODULES (not of import, which other imports can change)."""
    for module in MODULES:
        importlib.import_module(module)
    ordered = sorted(BENCHMARKS.values(), key=lambda bench: MODULES.index(bench.run.__module__))
    return [bench.name for bench in ordered]


async def run_benchmarks(
    settings: Settings,
    names: list[str],
    *,
    quick: bool,
    command: str,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[dict, BenchContext]:
    known = available()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SandboxError(f"unknown benchmark {', '.join(unknown)}", f"choose from: {', '.join(known)}")
    context = BenchContext(settings, quick)
    load_before = _load_average()
    run_began = time.perf_counter()
    results: dict[str, Any] = {}
    for name in names or known:
        bench = BENCHMARKS[name]
        progress(f"{name}: {bench.title} …")
        began = time.perf_counter()
        try:
            figures = await bench.run(context)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        results[name] = {"title": bench.title, **figures, "seconds": round(time.perf_counter() - began, 2)}
        outcome = f"FAILED, {figures['error']}" if "error" in figures else "done"
        progress(f"{name}: {outcome} in {results[name]['seconds']} s")
    report = {
        "command": command,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.perf_counter() - run_began, 1),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "keycloak": settings.keycloak_version,
            # The machine may be shared: how busy it was (1, 5, 15 min load averages) when the run began and ended.
            "load_average_at_start": load_before,
            "load_average_at_end": _load_average(),
        },
        "results": results,
        # The targets table: each row's target, what this run measured, and whether it was met (null: not judged).
        "targets": table(results),
    }
    return report, context


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


@dataclass(frozen=True)
class Target:
    benchmark: str
    where: str
    target: str
    measured: str
    met: bool
    why_missed: str


def targets(report: dict) -> list[Target]:
    """Every ``{target, measured, target_met, why_missed?}`` inside the benchmarks' results (their own finer
    targets, beside the targets table), with the benchmark and place."""
    found: list[Target] = []

    def walk(name: str, where: str, value: Any) -> None:
        if isinstance(value, dict):
            if "target" in value and "target_met" in value:
                found.append(
                    Target(
                        name,
                        where or "-",
                        str(value["target"]),
                        str(value.get("measured", "")),
                        bool(value["target_met"]),
                        str(value.get("why_missed", "")),
                    )
                )
            for key, inner in value.items():
                walk(name, f"{where}.{key}" if where else key, inner)

    for name, figures in report["results"].items():
        walk(name, "", figures)
    return found


def failed(report: dict) -> list[str]:
    return [name for name, figures in report["results"].items() if "error" in figures]


def write_plot(context: BenchContext, path: Path, report: dict | None = None) -> None:
    """Every kept distribution as a box plot, side by side on one log-scaled axis; below it, each judged row of
    the targets table as its measured figure over its target (the target is the line at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, samples in context.distributions.items() if samples]
    rows = [row for row in (report or {}).get("targets", []) if normalized(row) is not None]
    growth = {name: points for name, points in context.growth.items() if points}
    heights = [1.2 + 0.6 * max(1, len(names))] + ([0.8 + 0.5 * len(rows)] if rows else [])
    heights += [4.0] if growth else []
    figure, panels = plt.subplots(
        len(heights), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    axes = panels[0][0]
    if names:
        axes.boxplot(
            [context.distributions[n] for n in names], orientation="horizontal", tick_labels=names, showfliers=True
        )
        axes.set_xscale("log")
    axes.set_xlabel("milliseconds (log scale)")
    axes.set_title("mcp-sandbox bench: latency distributions")
    if rows:
        marks = panels[1][0]
        values = [normalized(row) for row in rows]
        labels = [f"{row['benchmark']}: {row['figure'][:48]} ({row['target']})" for row in rows]
        colours = ["tab:green" if row["target_met"] else "tab:red" for row in rows]
        positions = list(range(len(rows)))
        marks.scatter(values, positions, c=colours, zorder=3)
        marks.axvline(1.0, color="black", linestyle="--", label="target")
        marks.set_yticks(positions, labels)
        marks.set_xscale("log")
        marks.set_xlabel("measured / target (log scale; left of the line is met)")
        marks.set_title("targets: each judged row of the targets table")
        marks.legend(loc="lower right")
    if growth:
        grown = panels[-1][0]
        for name, points in growth.items():
            grown.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
        grown.set_xscale("log")
        grown.set_yscale("log")
        grown.set_xlabel("agents in one tenant (log scale)")
        grown.set_ylabel("value, in each series' unit (log scale)")
        grown.set_title("cost growth: each figure against the tenant's agent count")
        grown.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _sharing(machine: dict[str, Any]) -> str:
    """Whether other work loaded the machine during the run, from the load averages at its start and end."""
    loads = f"load average (1, 5, 15 min) {machine['load_average_at_start']} at the start, "
    loads += f"{machine['load_average_at_end']} at the end"
    if max(machine["load_average_at_start"] + machine["load_average_at_end"]) > (machine["cores"] or 1):
        return (
            f"**The machine was shared with other work during this run** ({loads}, on {machine['cores']} cores): "
            "every figure below is slower, and noisier, than on an idle machine."
        )
    return f"The machine was otherwise idle ({loads}, on {machine['cores']} cores)."


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if {"median", "p95", "p99", "n"} <= value.keys():
            unit = value.get("unit", "")
            summary = (
                f"median {value['median']} · p95 {value['p95']} · p99 {value['p99']} · "
                f"min {value['min']} · max {value['max']} {unit} (n={value['n']})"
            )
            return [(prefix, summary)]
        rows: list[tuple[str, str]] = []
        for key, inner in value.items():
            rows.extend(_rows(f"{prefix}.{key}" if prefix else key, inner))
        return rows
    if isinstance(value, list):
        return [(prefix, ", ".join(map(str, value)))]
    return [(prefix, str(value))]


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**no**")


def _targets_table(report: dict) -> list[str]:
    """The targets table as the run's JSON has it, row for row."""
    rows = report.get("targets", [])
    if not rows:
        return []
    lines = [
        "## Targets",
        "",
        "| benchmark | figure | target | measured | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        measured = "not measured" if row["measured"] is None else f"{row['measured']} {row['unit']}".strip()
        note = row["note"].replace("|", "\\|")
        lines.append(
            f"| {row['benchmark']} | {row['figure']} | {row['target']} | {measured} | {_met(row['target_met'])} "
            f"| {note} |"
        )
    lines += [
        "",
        "A met of n/a is a row reported, not judged, or a figure this run did not measure (see its note).",
        "",
    ]
    return lines


def write_markdown(report: dict, path: Path, plot: Path | None) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Generated by the command below on this project's reference machine; do not edit by hand.",
        "",
        f"    {report['command']}",
        "",
        f"Date: {report['date']} · machine: {report['machine']['cores']} cores, {report['machine']['platform']}, "
        f"Python {report['machine']['python']}, Keycloak {report['machine']['keycloak']}"
        + (" · quick mode" if report["quick"] else ""),
        "",
        f"The whole run took {report['seconds']} s. {_sharing(report['machine'])}",
        "",
    ]
    lines += _targets_table(report)
    found = targets(report)
    if found:
        lines += [
            "## Each benchmark's own targets",
            "",
            "| benchmark | where | target | measured | met |",
            "|---|---|---|---|---|",
        ]
        for t in found:
            lines.append(f"| {t.benchmark} | {t.where} | {t.target} | {t.measured} | {'yes' if t.met else '**no**'} |")
        lines.append("")
        missed = [t for t in found if not t.met]
        if missed:
            lines += ["Why the missed ones were missed, from what the run measured:", ""]
            lines += [f"- **{t.benchmark}** {t.where}: {t.why_missed or 'no reason recorded'}." for t in missed]
            lines.append("")
    for name, figures in report["results"].items():
        lines += [f"## {name}: {figures['title']}", "", "| figure | value |", "| --- | --- |"]
        lines += [
            f"| {key} | {value} |" for key, value in _rows("", {k: v for k, v in figures.items() if k != "title"})
        ]
        lines.append("")
    if plot is not None:
        lines += [f"![latency distributions]({os.path.relpath(plot, path.parent)})", ""]
    path.write_text("\n".join(lines))
