"""What the whole test run checks once, in the controlling process: the secret scan after the suite, and the
reliability table.

- Every credential the run is issued (agent secrets, admin passwords and one-time-code seeds, tokens, keys) is
  recorded in a registry file in the stack's state directory (``sandbox.issued``; the workers inherit its
  path). When the session ends, ``sandbox.harness.secret_scan`` looks for each of them, and for anything
  shaped like a full token or a private key, in every log, the broker's database and audit, generated configs
  and the run's reports; one found fails the run.
- Tests marked ``@pytest.mark.reliability(area, attack, expected)`` (and counting their cases with the
  ``reliability`` fixture) are collected with their outcome into ``reports/reliability.json``; with
  ``--reliability-table README.md`` the table between the markers in that file is rendered from it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from capability_table import Proof, put_between_markers, render_capability_table

from sandbox.config import load_settings
from sandbox.harness import suite_run
from sandbox.harness.secret_scan import by_design, known_credentials, scan
from sandbox.issued import ENVIRONMENT as REGISTRY_VARIABLE
from sandbox.stack.launcher import docker_socket_exists
from sandbox.stack.process import RUN_MARKER, marked, stop_all

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "reports" / "reliability.json"
BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"
AREAS = ["Faults", "Hostile input", "Abuse", "Secret hygiene", "Concurrency", "Scale out"]


@dataclass
class Row:
    area: str
    attack: str
    cases: int
    outcome: str
    test: str


_ROWS: list[Row] = []
_PROOFS: list[Proof] = []
_TEST_SECONDS: dict[str, float] = {}  # node id -> its setup, call and teardown, for the suite-run record
_STARTED: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-table",
        metavar="FILE",
        default=None,
        help="render the reliability table of this run into FILE, between its reliability-table markers",
    )
    parser.addoption(
        "--capability-table",
        metavar="FILE",
        default=None,
        help="render what each IdP kept in this run into FILE, between its capability-table markers",
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)  # after the sandbox plugin chose the run's state directory
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(area, attack, expected): a fault or attack tried; a row of the reliability table"
    )
    config.addinivalue_line(
        "markers", "capability(idp, name): proves the IdP keeps (or plainly refuses) a capability; a table cell"
    )
    if _is_worker(config) or REGISTRY_VARIABLE in os.environ:
        return
    state_dir = load_settings().state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    os.environ[REGISTRY_VARIABLE] = str(state_dir / "issued-credentials.jsonl")


class Cases:
    """How many cases a reliability test checked (``reliability.add(n)``, after the checks it counts)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, count: int = 1) -> None:
        self.count += count


CASES = pytest.StashKey[Cases]()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Cases:
    cases = request.node.stash.setdefault(CASES, Cases())
    return cases


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not report.skipped and (report.when == "call" or report.failed):
        for proof in item.iter_markers("capability"):
            idp, name = proof.args
            report.user_properties.append(
                ("capability", json.dumps(asdict(Proof(idp, name, report.passed, item.nodeid))))
            )
    marker = item.get_closest_marker("reliability")
    if marker is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    area, attack, expected = marker.args
    cases = item.stash.get(CASES, Cases()).count
    if report.passed and report.when == "call" and cases == 0:
        report.outcome = "failed"
        report.longrepr = "a reliability test counts the cases it checked (reliability.add) after checking them; none"
    if report.passed:
        result = expected
    else:
        reason = str(report.longrepr).strip().splitlines()[-1] if report.longrepr else ""
        result = f"**FAILED** {reason[:140]}"
    row = Row(area, attack, cases, result, item.nodeid)
    report.user_properties.append(("reliability", json.dumps(asdict(row))))


def pytest_sessionstart(session: pytest.Session) -> None:
    # The commit as the run found it: the run itself rewrites the README's tables, which would read as changes.
    _STARTED.update(at=time.monotonic(), load=suite_run.load_average(), commit=suite_run.commit(ROOT))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TEST_SECONDS[report.nodeid] = _TEST_SECONDS.get(report.nodeid, 0.0) + report.duration
    for name, value in report.user_properties:
        if name == "reliability":
            _ROWS.append(Row(**json.loads(value)))
        elif name == "capability":
            _PROOFS.append(Proof(**json.loads(value)))


@pytest.hookimpl(trylast=True)  # after the sandbox plugin stopped the session's stack
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        return
    stack_ran = load_settings().log_dir.is_dir()
    if stack_ran and not _secret_scan(config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not _nothing_left_behind(config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    capability_table = config.getoption("--capability-table")
    if _PROOFS and capability_table:
        render_capability_table(Path(capability_table), _PROOFS)
    if _ROWS:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps([asdict(r) for r in _ROWS], indent=2) + "\n")
        target = config.getoption("--reliability-table")
        if target:
            render_table(Path(target), _ROWS)
    if config.getoption("--reliability-table"):  # the whole suite, as `make test` runs it
        _record_suite_run(session)


def _record_suite_run(session: pytest.Session) -> None:
    """What the bench's `suite` row reads: this session's wall time, outcome, and how busy the machine was."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    counted = {kind: len(reporter.stats.get(kind, [])) if reporter else 0 for kind in ("passed", "failed", "skipped")}
    slowest = sorted(_TEST_SECONDS.items(), key=lambda pair: pair[1], reverse=True)[:10]
    run = suite_run.SuiteRun(
        finished=suite_run.now(),
        commit=_STARTED["commit"],
        seconds=round(time.monotonic() - _STARTED["at"], 1),
        passed=counted["passed"],
        failed=counted["failed"] + len(reporter.stats.get("error", [])) if reporter else 0,
        skipped=counted["skipped"],
        exit_status=int(session.exitstatus),
        cores=os.cpu_count() or 1,
        load_average_at_start=_STARTED["load"],
        load_average_at_end=suite_run.load_average(),
        ci=os.environ.get("CI") == "true",
        workers=int(getattr(session.config.option, "numprocesses", 0) or 0),
        test_seconds=round(sum(_TEST_SECONDS.values()), 1),
        slowest=[(name, round(seconds, 1)) for name, seconds in slowest],
    )
    suite_run.write(ROOT / suite_run.RECORD, run)


def _secret_scan(config: pytest.Config) -> bool:
    """Scan the stack's state directory, the reports and the run's temporary files; report, and say if clean."""
    settings = load_settings()
    registry = Path(os.environ[REGISTRY_VARIABLE])
    roots = [settings.state_dir, ROOT / "reports", config._tmp_path_factory.getbasetemp()]  # type: ignore[attr-defined]
    report = scan(roots, known_credentials(settings, registry), by_design(settings, registry))
    clean = not report.findings and report.credentials > 0
    expected = f"0 found in {report.files} files (logs, broker database and audit, configs, reports)"
    outcome = expected if clean else f"**FAILED** {len(report.findings)} found: {'; '.join(map(str, report.findings))}"
    if report.credentials == 0:
        outcome = "**FAILED** no credential was recorded: the registry is not working"
    _ROWS.append(
        Row("Secret hygiene", "Scan after the whole suite for every credential issued", report.credentials, outcome, "")
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "secret scan", red=not clean, green=clean)
        reporter.write_line(f"{report.credentials} credentials looked for in {report.files} files: {outcome}")
    registry.unlink(missing_ok=True)
    return clean


def _nothing_left_behind(config: pytest.Config) -> bool:
    """Every stack the run started is stopped: no process carries the run's marker, no container its label.

    Whatever is found is reported, then stopped, so a failed run still leaves the machine clean.
    """
    run = os.environ[RUN_MARKER]
    examined = sum(1 for _ in psutil.process_iter())
    processes = marked(RUN_MARKER, run)
    names = [f"pid {p.pid} ({' '.join(p.cmdline()[:3])})" for p in processes]
    stop_all(processes)
    containers: list[str] = []
    if docker_socket_exists():
        from sandbox.stack.container import RUN_LABEL, labelled, remove_all

        found = labelled(RUN_LABEL, run)
        containers = [f"container {c.name}" for c in found]
        remove_all(found)
    left = names + containers
    clean = not left
    outcome = "nothing left" if clean else f"**FAILED** left running: {'; '.join(left)}"
    _ROWS.append(
        Row("Faults", "Processes and containers of the run's stacks alive after the whole suite", examined, outcome, "")
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "left behind", red=not clean, green=clean)
        reporter.write_line(f"{examined} processes examined for this run's stacks: {outcome}")
    return clean


def render_table(path: Path, rows: list[Row]) -> None:
    """Put the table between the markers of ``path`` (the README's reliability section)."""
    merged: dict[tuple[str, str], Row] = {}
    for row in rows:  # a parametrized test is one row: its cases added up, failed if any part failed
        seen = merged.setdefault((row.area, row.attack), Row(row.area, row.attack, 0, row.outcome, row.test))
        seen.cases += row.cases
        if row.outcome.startswith("**FAILED**"):
            seen.outcome = row.outcome
    order = {area: index for index, area in enumerate(AREAS)}
    lines = ["| Area | Fault or attack tried | Cases | Outcome |", "| --- | --- | ---: | --- |"]
    for row in sorted(merged.values(), key=lambda r: (order.get(r.area, len(AREAS)), r.attack)):
        lines.append(f"| {row.area} | {row.attack} | {row.cases} | {row.outcome} |")
    put_between_markers(path, BEGIN, END, lines, "reliability table")
