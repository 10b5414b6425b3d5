"""A self-contained HTML report: each scenario, each step with its outcome and evidence, load plots inline."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

from sandbox.log import redact
from sandbox.scenarios.results import LoadSeries, ScenarioResult

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d1d1f}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #ddd;padding:.35em .5em;vertical-align:top;text-align:left}
.passed{color:#137333} .failed,.error{color:#c5221f} .notrun{color:#888} .notsupported{color:#b06000}
pre{margin:0;white-space:pre-wrap;font-size:12px;background:#f6f8fa;padding:.4em}
details summary{cursor:pointer;color:#555}
"""


def load_plot(series: LoadSeries) -> str:
    """A PNG (base64) of calls per 100 ms, successes and failures, with rotation/revocation moments marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bucket = 0.1
    end = max((s.at for s in series.samples), default=0.0)
    edges = [i * bucket for i in range(int(end / bucket) + 2)]
    ok = [0] * len(edges)
    bad = [0] * len(edges)
    for sample in series.samples:
        (ok if sample.ok else bad)[int(sample.at / bucket)] += 1
    figure, axes = plt.subplots(figsize=(9, 3.5))
    axes.plot(edges, [n / bucket for n in ok], label="successful calls/s", color="#137333")
    axes.plot(edges, [n / bucket for n in bad], label="failed calls/s", color="#c5221f")
    axes.set_ylim(bottom=0, top=max([*ok, *bad, 1]) / bucket * 1.6)  # headroom for the labels
    for name, at in series.marks.items():
        axes.axvline(at, linestyle="--", color="#555")
        axes.text(at, 0.97, f" {name}", transform=axes.get_xaxis_transform(), rotation=90, va="top", ha="right",
                  fontsize=7)  # fmt: skip
    axes.set_xlabel("seconds since load began")
    axes.set_title(series.label)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def milliseconds(seconds: float) -> str:
    """A duration in whole milliseconds: a fast step is ``3 ms``, not ``0.00s``."""
    return f"{seconds * 1000:,.0f} ms"


def write_html(results: list[ScenarioResult], path: Path, versions: dict[str, str] | None = None) -> None:
    passed = sum(r.passed for r in results)
    stack = " · ".join(f"{name} {value}" for name, value in (versions or {}).items())
    unsupported = sum(r.not_supported is not None for r in results)
    parts = [
        f"<!doctype html><meta charset=utf-8><title>mcp-sandbox scenarios</title><style>{STYLE}</style>",
        f"<h1>Scenario report</h1><p>{passed} of {len(results)} scenarios passed"
        f"{f', {unsupported} not supported by the IdP' if unsupported else ''} · "
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}"
        + (f"<br><small>{html.escape(stack)}</small>" if stack else "")
        + "</p>",
        _summary(results),
    ]
    for number, result in enumerate(results):
        state = "passed" if result.passed else "not supported" if result.not_supported else "failed"
        modes = ", ".join(result.scenario.header.revocation_modes)
        parts.append(
            f"<h2 id=scenario-{number} class={state.replace(' ', '')}>"
            f"{html.escape(result.scenario.name)} — {state}</h2>"
            f"<p>{html.escape(result.scenario.header.description)}<br>"
            f"<small>{html.escape(str(result.scenario.path))} · tenant {html.escape(result.tenant)} · "
            f"revocation modes {html.escape(modes)} · {milliseconds(result.duration)}</small></p>"
        )
        if result.setup_error:
            parts.append(f"<p class=error>Setup failed: {html.escape(result.setup_error)}</p>")
        parts.append("<table><tr><th>#</th><th>step</th><th>outcome</th><th>time</th><th>evidence</th></tr>")
        for step in result.steps:
            css = step.outcome.replace(" ", "")
            detail = ""
            if step.outcome in ("failed", "error", "not supported"):
                detail = f"<b>{html.escape(step.describe())}</b>"
            evidence = json.dumps(redact(step.evidence), indent=1, default=str)
            parts.append(
                f"<tr id=scenario-{number}-step-{step.step.index + 1}><td>{step.step.index + 1}</td>"
                f"<td>{html.escape(step.step.label())}<br><small>line {step.step.line}</small></td>"
                f"<td class={css}>{step.outcome}{detail and '<br>' + detail}</td>"
                f"<td>{milliseconds(step.duration)}</td><td><details><summary>evidence</summary>"
                f"<pre>{html.escape(evidence)}</pre></details></td></tr>"
            )
        parts.append("</table>")
        for series in result.load:
            parts.append(
                f"<p>{html.escape(series.label)}: {len(series.samples)} calls, {series.failures} failed</p>"
                f"<img alt='load plot' src='data:image/png;base64,{load_plot(series)}'>"
            )
    path.write_text("\n".join(parts))


def _summary(results: list[ScenarioResult]) -> str:
    """One row per scenario, failures first, each linking to its section (and to its failing step)."""
    headings = "".join(f"<th>{name}</th>" for name in ("scenario", "outcome", "steps", "time", "first problem"))
    rows = [f"<table class=summary><tr>{headings}</tr>"]
    order = sorted(range(len(results)), key=lambda number: results[number].passed)  # stable: file order within
    for number in order:
        result = results[number]
        state = "passed" if result.passed else "failed"
        done = sum(step.outcome == "passed" for step in result.steps)
        problem = result.first_problem
        if result.setup_error:
            first = html.escape(f"could not set up: {result.setup_error}")
        elif problem is not None:
            anchor = f"#scenario-{number}-step-{problem.step.index + 1}"
            first = f"<a href='{anchor}'>{html.escape(problem.describe())}</a>"
        else:
            first = ""
        rows.append(
            f"<tr><td><a href='#scenario-{number}'>{html.escape(result.scenario.name)}</a></td>"
            f"<td class={state}>{state}</td><td>{done} of {len(result.steps)} passed</td>"
            f"<td>{milliseconds(result.duration)}</td><td>{first}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)
