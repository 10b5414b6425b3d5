"""The suite's wall time: not run here (it takes tens of minutes and starts stacks of its own), but read from the
record the newest whole-suite run (``make test``) left in ``reports/suite-run.json``, with when, at which commit
and on how busy a machine it ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.bench.registry import BenchContext, benchmark
from sandbox.harness.suite_run import RECORD, read


@benchmark("suite", "make test: the newest whole-suite run's wall time, from its record")
async def suite(context: BenchContext) -> dict[str, Any]:
    record = Path.cwd() / RECORD
    run = read(record)
    if run is None:
        return {
            "not_measured": {
                "make_test_minutes": f"not measured: no whole-suite run is recorded in {RECORD}: "
                "run `make test` here, then the bench"
            }
        }
    outcome = f"{run.passed} passed, {run.failed} failed, {run.skipped} skipped, exit status {run.exit_status}"
    slowest = run.slowest[:5]
    figures: dict[str, Any] = {
        "make_test_minutes": run.minutes,
        "record": str(RECORD),
        "run": {
            "workers": run.workers,
            "test_seconds": run.test_seconds,
            "slowest": [list(pair) for pair in run.slowest],
            "finished": run.finished,
            "commit": run.commit,
            "seconds": run.seconds,
            "outcome": outcome,
            "cores": run.cores,
            "load_average_at_start": run.load_average_at_start,
            "load_average_at_end": run.load_average_at_end,
            "ci": run.ci,
        },
        "note": (
            f"the pytest session of `make test` at {run.commit}, finished {run.finished}: {outcome}; load average "
            f"{run.load_average_at_start} at its start, {run.load_average_at_end} at its end, on {run.cores} cores "
            "(install, image and conformance-suite steps, cached, are not in it)"
        ),
        "why_missed": (
            f"{run.minutes} min for {run.passed + run.failed + run.skipped} tests on {run.workers or 1} workers: the "
            f"tests' own times add up to {run.test_seconds / 60:.1f} min; the {len(slowest)} slowest took "
            f"{sum(seconds for _, seconds in slowest):.0f} s of it: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in slowest)
        ),
    }
    if run.exit_status != 0:  # a failed run's time is not the suite's
        figures["make_test_minutes"] = None
        figures["not_measured"] = {
            "make_test_minutes": f"not measured: the newest recorded run failed ({figures['note']})"
        }
    return figures
