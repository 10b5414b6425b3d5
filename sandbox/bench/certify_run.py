"""certify: a whole `mcp-sandbox certify` run against the stack's reference server (jwt+events), per MCP revision:
the command's wall time from start to exit (World set-up, every check, clean-up), several runs back to back."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.bench.stack_start import MCP_SANDBOX
from sandbox.bench.stats import summarize

#: The MCP revisions certify checks (``mcp-sandbox certify --spec``); the bench runs the command, as a user does.
REVISIONS = ("2025-11-25", "2026-07-28")
#: The whole run's target, median, against the reference server on a warm stack and an idle machine.
TARGET_SECONDS = 20.0


async def _certify_once(context: BenchContext, revision: str, report: Path) -> tuple[float, int, str]:
    settings = context.settings
    manifest = settings.fixtures_dir / "certify" / "reference-server.yaml"
    command = [MCP_SANDBOX, "certify", "--url", settings.mcp_url, "--manifest", str(manifest)]
    command += ["--spec", revision, "--strict", "--json", str(report)]
    env = {**os.environ, **settings.as_environment()}
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    seconds = time.perf_counter() - began
    lines = (stdout or stderr).decode().strip().splitlines()
    return seconds, process.returncode or 0, lines[-1] if lines else ""


def check_seconds(report: Path) -> dict[str, float]:
    """Each check's duration (s) in one run's checks.json."""
    return {entry["id"]: float(entry["details"]["duration_seconds"]) for entry in json.loads(report.read_text())}


def why_slow(wall: float, checks: dict[str, list[float]], spread: str) -> str:
    """Where a run's wall time went, from its checks' own durations (median over the runs of that revision)."""
    medians = {check: sorted(values)[len(values) // 2] for check, values in checks.items() if values}
    if not medians:
        return f"{spread}; the runs' reports gave no check durations"
    longest = sorted(medians.items(), key=lambda pair: pair[1], reverse=True)
    total = sum(medians.values())
    outside = wall - longest[0][1]
    return (
        f"{spread}. In the slowest revision's runs (median s per check) the longest checks were "
        + ", ".join(f"{check} {seconds:.1f}" for check, seconds in longest[:3])
        + f"; its {len(medians)} checks' times add up to {total:.1f} s against a median wall of {wall:.1f} s"
        + (" (they run side by side)" if total > wall else "")
        + f", and {outside:.1f} s of the wall is outside the longest check: set-up, the checks not beside it, "
        "clean-up"
    )


@benchmark("certify", "certify: a whole run against the stack's reference server, per MCP revision")
async def certify_run(context: BenchContext) -> dict[str, Any]:
    runs = context.size(5, 2)
    results: dict[str, Any] = {"runs_per_revision": runs, "server": context.settings.mcp_url}
    per_check: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-certify-") as scratch:
        for revision in REVISIONS:
            walls, verdicts = [], []
            checks: dict[str, list[float]] = {}
            for index in range(runs):
                report = Path(scratch) / f"{revision}-{index}.json"
                seconds, code, last = await _certify_once(context, revision, report)
                if code != 0:
                    raise RuntimeError(f"certify --spec {revision} exited {code}: {last}")
                walls.append(seconds)
                verdicts.append(last)
                for check, taken in check_seconds(report).items():
                    checks.setdefault(check, []).append(taken)
            results[revision] = {"wall": summarize(walls, unit="s"), "verdict": verdicts[-1]}
            per_check[revision] = checks
    slowest_revision = max(REVISIONS, key=lambda revision: results[revision]["wall"]["median"])
    slowest = results[slowest_revision]["wall"]["median"]
    spread = "; ".join(
        f"{revision}: min {results[revision]['wall']['min']} s, median {results[revision]['wall']['median']} s, "
        f"max {results[revision]['wall']['max']} s"
        for revision in REVISIONS
    )
    results["slowest_revision_median"] = target(
        f"< {TARGET_SECONDS:g} s",
        f"{slowest} s",
        slowest < TARGET_SECONDS,
        why_slow(slowest, per_check[slowest_revision], spread),
    )
    results["slowest_revision_median"]["seconds"] = slowest
    return results
