"""A single self-contained HTML page: the verdict, a row per check, and each check's findings and evidence."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from sandbox.certify.baseline import Verdict
from sandbox.certify.model import CheckResult
from sandbox.certify.summary import last_line, root_causes

COLOURS = {"SUCCESS": "#1a7f37", "FAILURE": "#cf222e", "WARNING": "#9a6700", "SKIPPED": "#57606a"}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1f2328; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: .3rem .6rem; }
tr { border-bottom: 1px solid #d0d7de; } .status { font-weight: 600; } code, pre { font-size: 12px; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; max-height: 30rem; }
li.unmet { color: #cf222e; } li.warn { color: #9a6700; } details { margin: .2rem 0 1rem; }
"""


def _status(result: CheckResult) -> str:
    label = result.status + (" (expected)" if result.expected_failure else "")
    return f'<span class="status" style="color:{COLOURS[result.status]}">{escape(label)}</span>'


def _finding_class(met: bool, warning: bool) -> str:
    return "" if met else ("warn" if warning else "unmet")


def html_report(results: list[CheckResult], server: str, verdict: Verdict) -> str:
    counts = {status: sum(1 for r in results if r.status == status) for status in COLOURS}
    summary = ", ".join(f"{n} {status.lower()}" for status, n in counts.items() if n)
    outcome = "passed" if verdict.exit_code == 0 else "failed"
    revision = results[0].revision if results else "-"
    problems = [last_line(results, verdict), *(f"likely root cause: {cause}" for cause in root_causes(results))]
    rows, sections = [], []
    for result in results:
        spec = result.spec
        rows.append(
            f'<tr><td>{_status(result)}</td><td><a href="#{escape(spec.id)}"><code>{escape(spec.id)}</code></a></td>'
            f"<td>{escape(spec.level)}</td><td>{escape(spec.name)}</td><td>{escape(result.message)}</td></tr>"
        )
        references = "".join(f'<li><a href="{escape(r.url)}">{escape(r.id)}</a></li>' for r in result.references)
        findings = "".join(
            f'<li class="{_finding_class(f.met, f.warning)}">{"✔" if f.met else "✘"} {escape(f.expectation)}'
            + (f" <small>({escape(f.observed)})</small>" if f.observed else "")
            + "</li>"
            for f in result.findings
        )
        evidence = escape(json.dumps([e.as_dict() for e in result.evidence], indent=2, default=str))
        sections.append(
            f'<h3 id="{escape(spec.id)}"><code>{escape(spec.id)}</code> {_status(result)}</h3>'
            f"<p>{escape(spec.description)}</p>"
            + "".join(f"<p><em>{escape(remark)}</em></p>" for remark in result.remarks)
            + f"<ul>{references}</ul><ul>{findings}</ul>"
            f"<details><summary>evidence ({len(result.evidence)} exchanges)</summary><pre>{evidence}</pre></details>"
        )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>certify {escape(server)}</title><style>{STYLE}</style></head><body>"
        f"<h1>mcp-sandbox certify: {escape(outcome)}</h1><p>Server <code>{escape(server)}</code>, MCP "
        f"{escape(revision)}: {escape(summary)}."
        + "".join(f"<br>{escape(p)}" for p in problems)
        + "</p><table><tr><th>status</th><th>check</th><th>level</th><th>requirement</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(sections)
        + "</body></html>\n"
    )


def write_html(results: list[CheckResult], server: str, verdict: Verdict, path: Path) -> None:
    path.write_text(html_report(results, server, verdict))
