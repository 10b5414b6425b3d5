"""Expected failures, as in the official conformance suite: a baseline of check ids allowed to fail.

The file is ``server:`` followed by a list of entries, each a check id or ``mcp-auth:<check id>`` (certify runs
one scenario, ``mcp-auth``, so both name the same check). A listed check that fails (FAILURE or WARNING) is
expected; one that passes is a *stale* entry, which fails the run until it is removed. The run's exit code
is 0 only when no check fails (FAILURE: a MUST or product check, or any check's control) unexpectedly, no
entry is stale and, with ``strict``, no check warns (a SHOULD that fails) unexpectedly either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sandbox.certify.model import CheckResult
from sandbox.yamlfile import load_yaml

SCENARIO = "mcp-auth"


class _Baseline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: list[str] = []
    client: list[str] = []  # the official format's other section; certify has no client checks


def load_expected_failures(path: Path, known_ids: list[str]) -> set[str]:
    """The check ids the file lists; an unknown id is refused with its line."""
    document = load_yaml(path)
    baseline = document.validate(_Baseline, document.data if document.data is not None else {})
    listed = set()
    for index, entry in enumerate(baseline.server):
        check_id = entry.split(":", 1)[1] if entry.startswith(f"{SCENARIO}:") else entry
        if check_id not in known_ids:
            raise document.error(
                ("server", index), f"server[{index}] {entry!r} is not a certify check",
                f"use a check id ({', '.join(known_ids)}), optionally as {SCENARIO}:<check id>",
            )  # fmt: skip
        listed.add(check_id)
    return listed


#: Exit codes of ``certify``: documented in the README and the command's help.
CERTIFIED = 0
NOT_CERTIFIED = 1
CANNOT_RUN = 2


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    unexpected: list[str]  # checks that failed (with strict: or warned) and are not listed
    stale: list[str]  # listed checks that passed
    expected: list[str]  # listed checks that failed
    strict: bool = False


def evaluate(results: list[CheckResult], expected_failures: set[str], *, strict: bool = False) -> Verdict:
    """Mark the expected failures on ``results`` and decide the exit code."""
    failing = ("FAILURE", "WARNING") if strict else ("FAILURE",)
    unexpected, stale, expected = [], [], []
    for result in results:
        listed = result.id in expected_failures
        result.expected_failure = listed and result.failed
        if listed and result.status == "SUCCESS":
            stale.append(result.id)
        elif listed and result.failed:
            expected.append(result.id)
        elif result.status in failing:
            unexpected.append(result.id)
    return Verdict(NOT_CERTIFIED if unexpected or stale else CERTIFIED, unexpected, stale, expected, strict)
