"""The bench's `suite` row reads the newest `make test` run's record: its time when it passed, a reason when it
failed or none is recorded, and the slowest tests as the why."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sandbox.bench import suite as suite_module
from sandbox.bench.registry import BenchContext
from sandbox.bench.targets import table
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.harness.suite_run import RECORD, SuiteRun, read, write


def recorded(exit_status: int = 0) -> SuiteRun:
    return SuiteRun(
        finished="2026-12-07T06:00:00Z",
        commit="abc1234",
        seconds=1380.0,
        passed=1390,
        failed=0 if exit_status == 0 else 1,
        skipped=10,
        exit_status=exit_status,
        cores=2,
        load_average_at_start=[0.1, 0.2, 0.3],
        load_average_at_end=[2.0, 2.1, 2.2],
        ci=True,
        workers=2,
        test_seconds=2700.0,
        slowest=[("a.py::slow", 307.0), ("b.py::slower", 300.0)],
    )


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    context = BenchContext(Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"), quick=False)
    return asyncio.run(suite_module.suite(context))


def row(figures: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in table({"suite": figures}) if r["benchmark"] == "suite")


def test_a_passed_run_gives_its_minutes_and_the_slowest_tests_as_the_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / RECORD, recorded())
    figures = run(tmp_path, monkeypatch)
    judged = row(figures)
    assert judged["measured"] == 23.0 and judged["target_met"] is False
    assert "1400 tests on 2 workers" in judged["note"] and "45.0 min" in judged["note"]
    assert "a.py::slow 307 s, b.py::slower 300 s" in judged["note"]
    assert "abc1234" in figures["note"] and "[0.1, 0.2, 0.3]" in figures["note"]


def test_a_failed_run_is_not_the_suites_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / RECORD, recorded(exit_status=1))
    judged = row(run(tmp_path, monkeypatch))
    assert judged["measured"] is None and judged["target_met"] is None
    assert judged["note"].startswith("not measured: the newest recorded run failed")


def test_no_record_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    judged = row(run(tmp_path, monkeypatch))
    assert judged["measured"] is None and "run `make test` here, then the bench" in judged["note"]


def test_a_damaged_record_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / RECORD
    path.parent.mkdir()
    path.write_text('{"seconds": 1')
    with pytest.raises(SandboxError) as raised:
        read(path)
    assert str(path) in str(raised.value) and "make test" in raised.value.fix
