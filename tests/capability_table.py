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


def render_capability_table(path: Path, proofs: list[Proof]) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise pytest.UsageError(f"{path} has no {BEGIN} … {END} markers to put the capability table between")
    idps = list(BY_IDP)
    lines = [f"| capability | {' | '.join(idps)} |", f"| --- |{' --- |' * len(idps)}"]
    for name, description in DESCRIPTIONS.items():
        lines.append(f"| {description} | {' | '.join(cell(idp, name, proofs) for idp in idps)} |")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{chr(10).join(lines)}\n{END}{tail}")
