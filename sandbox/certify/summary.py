"""What a run comes to, in words: the last line a CI log shows, and the likely root cause of a cascade.

The last line names the revision and, per level, the checks passed out of those examined, then every check
that was not examined and why, so "certified" never stands alone while a check was left out::

    certified for 2026-07-28: MUST 14/14, SHOULD 5/6, product 2/2; not examined: no-passthrough (why)

A check that passed but could not examine a part of its requirement (a declared cache or lifetime longer than
certify waits) is counted as passed and named again after "partly examined:", with the part and why.
"""

from __future__ import annotations

import re
from collections import Counter

from sandbox.certify.baseline import Verdict
from sandbox.certify.model import CheckResult

LEVELS = ("MUST", "SHOULD", "product")
#: How much of a reason the last line shows (reports keep it whole).
REASON_LENGTH = 90
_STATUS = re.compile(r"^HTTP (\d{3})")
#: A cascade: this many failing checks sharing one cause.
CASCADE = 2


def shorten(text: str, length: int = REASON_LENGTH) -> str:
    """``text`` cut at a word boundary with an ellipsis, for the console only."""
    if len(text) <= length:
        return text
    cut = text[: length - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return f"{cut}…"


def counts(results: list[CheckResult]) -> str:
    """Per level, always all three (a stable shape for CI logs): checks passed out of those examined."""
    parts = []
    for level in LEVELS:
        examined = [r for r in results if r.spec.level == level and r.status != "SKIPPED"]
        passed = sum(1 for r in examined if r.status == "SUCCESS")
        parts.append(f"{level} {passed}/{len(examined)}")
    return ", ".join(parts)


def last_line(results: list[CheckResult], verdict: Verdict) -> str:
    revision = results[0].revision if results else "?"
    outcome = "certified" if verdict.exit_code == 0 else "not certified"
    line = f"{outcome} for {revision}{' (strict)' if verdict.strict else ''}: {counts(results)}"
    if verdict.unexpected:
        line += f"; failed: {', '.join(verdict.unexpected)}"
    if verdict.stale:
        line += f"; stale expected failures: {', '.join(verdict.stale)}"
    skipped = [r for r in results if r.status == "SKIPPED"]
    if skipped:
        line += "; not examined: " + ", ".join(f"{r.id} ({shorten(r.message)})" for r in skipped)
    partly = [r for r in results if r.partly_examined]
    if partly:
        line += "; partly examined: " + ", ".join(f"{r.id} ({shorten('; '.join(r.unexamined))})" for r in partly)
    return line


def root_causes(results: list[CheckResult]) -> list[str]:
    """The causes a cascade of failures most likely shares, each said once (none for a lone failure)."""
    failed = [r for r in results if r.status in ("FAILURE", "WARNING")]
    if len(failed) < CASCADE:
        return []
    causes = []
    controls = [r.id for r in failed if any(f.expectation.startswith("control:") and not f.met for f in r.findings)]
    if len(controls) >= CASCADE:
        causes.append(
            f"the positive control failed in {len(controls)} checks ({', '.join(controls)}): the server refuses "
            "requests it must serve, so their negative results mean little; fix what `positive` shows first"
        )
    statuses: Counter[str] = Counter()
    checks_by_status: dict[str, set[str]] = {}
    for result in failed:
        for finding in result.findings:
            match = _STATUS.match(finding.observed) if not finding.met else None
            if match:
                statuses[match[1]] += 1
                checks_by_status.setdefault(match[1], set()).add(result.id)
    if len(statuses) == 1:
        status, _ = statuses.most_common(1)[0]
        involved = checks_by_status[status]
        if len(involved) >= CASCADE and status not in ("401", "403"):
            causes.append(
                f"every negative answer was {status} ({len(involved)} checks: {', '.join(sorted(involved))}): "
                "one layer of the server answers before its auth does, or maps every refusal to one status"
            )
    return causes
