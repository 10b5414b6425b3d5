"""The README's capability table, from the run: a test marked ``@pytest.mark.capability(idp, name)`` proves that
``idp`` keeps ``name`` (declared supported) or refuses it with its reason (declared missing). A cell says what
the declaration says only when such a test passed in this run; a failed one says so; an untested one says that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.idp.capabilities import BY_IDP, DESCRIPTIONS

BEGIN, END = "<!-- capability-table:begin -->", "<!-- capability-table:end -->"


@dataclass(frozen=True)
class Proof:
    idp: str
    capability: str
    passed: bool
    test: str


def cell(idp: str, capability: str, proofs: list[Proof]) -> str:
    support = BY_IDP[idp].features[capability]  # type: ignore[index]
    declared = ("yes" if support.supported else "no") + (f": {support.note}" if support.note else "")
    mine = [proof for proof in proofs if proof.idp == idp and proof.capability == capability]
    if not mine:
        return f"{declared} (not tested in this run)"
    failed = [proof for proof in mine if not proof.passed]
    if failed:
        return f"**FAILED** {failed[0].test}"
    return declared


def put_between_markers(path: Path, begin: str, end: str, lines: list[str], what: str) -> None:
    """Replace what ``path`` holds between its ``begin`` and ``end`` markers with ``lines`` (a README's table)."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise pytest.UsageError(f"{path} has no {begin} … {end} markers to put the {what} between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{chr(10).join(lines)}\n{end}{tail}")


def render_capability_table(path: Path, proofs: list[Proof]) -> None:
    idps = list(BY_IDP)
    lines = [f"| capability | {' | '.join(idps)} |", f"| --- |{' --- |' * len(idps)}"]
    for name, description in DESCRIPTIONS.items():
        lines.append(f"| {description} | {' | '.join(cell(idp, name, proofs) for idp in idps)} |")
    put_between_markers(path, BEGIN, END, lines, "capability table")
