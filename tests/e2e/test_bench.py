"""`mcp-sandbox bench --quick` against the test session's stack: all ten benchmarks run and report every figure,
and the targets table has a row, with target, measured and target_met, for each target.

A smoke test: it checks what the run reports, never how fast anything was.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx

from sandbox.agent import mcp_http
from sandbox.bench.auth_overhead import reference_server
from sandbox.bench.clients import ARGUMENTS, TOOL
from sandbox.bench.stack_start import MCP_SANDBOX
from sandbox.pytest_plugin import SandboxStack

SUMMARY = {"median", "p95", "p99", "min", "max", "n"}
BENCHMARKS = {
    "revocation",
    "auth-overhead",
    "provisioning",
    "token-issuance",
    "stack-start",
    "rotation",
    "cost-growth",
    "peers",
    "certify",
    "suite",
}
#: Where each benchmark's distributions (median, p95, p99, min, max, n) are, and its other figures.
SUMMARIES = {
    "revocation": [
        *[
            f"modes.{mode}.{figure}"
            for mode in ("jwt+events", "introspect", "jwt")
            for figure in ("time_to_401_from_revoke_request", "revoke_call")
        ],
        "modes.jwt.remaining_lifetime_at_revoke",
        "modes.jwt.time_to_401_beyond_remaining_lifetime",
        *[
            f"modes.jwt+events.broker_steps_ms.{step}"
            for step in ("first_event_answered", "idp_disabled", "closing_event_answered_and_client_removed")
        ],
        *[
            f"modes_on_hydra.{mode}.{figure}"
            for mode in ("jwt+events", "introspect")
            for figure in ("time_to_401_from_revoke_request", "revoke_call")
        ],
    ],
    "auth-overhead": [
        "no auth",
        "jwt",
        "introspect",
        "sdk bearer",
        # the reference servers' own steps, from each served call's Server-Timing header
        *[f"server_steps_ms.{server}.{step}" for server in ("no auth", "jwt") for step in ("read", "verify", "sdk")],
    ],
    "provisioning": [
        f"{path}.{call}"
        for path in ("broker", "direct", "broker_on_hydra")  # the session's stack lends Hydras
        for call in ("provision_call", "revoke_call")
    ]
    + ["broker.provision_steps_ms.idp_client_created", "broker.revoke_steps_ms.idp_disabled"],
    "token-issuance": ["latency"],
    "stack-start": [],
    "rotation": ["without_rotation.call_latency", "during_rotation.call_latency", "rotate_call"],
    "cost-growth": [f"at_size.100.{call}" for call in ("provision_call", "revoke_call", "agents_list_call")],
    "peers": [],
    "certify": [f"{revision}.wall" for revision in ("2025-11-25", "2026-07-28")],
    "suite": [],
}
NUMBERS = {
    "revocation": [
        *[f"modes.{mode}.revocations" for mode in ("jwt+events", "introspect", "jwt")],
        *[f"modes_on_hydra.{mode}.revocations" for mode in ("jwt+events", "introspect")],
    ],
    "auth-overhead": [
        "jwt_vs_no_auth.p50_ratio",
        "introspect_vs_no_auth.p50_ratio",
        "jwt_vs_sdk_bearer.p50_ratio",
        "calls_per_server",
    ],
    "provisioning": [
        *[
            f"{path}.{rate}"
            for path in ("broker", "direct")
            for rate in ("provisioned_per_second", "revoked_per_second")
        ],
        "broker_vs_direct.lifecycle_ratio",
        *[
            f"{figure}.{rate}"
            for figure in ("broker_on_hydra", "hydra_vs_keycloak_through_broker")
            for rate in ("provisioned_per_second", "revoked_per_second", "lifecycles_per_second")
        ],
        "broker_seconds_for_1000_agents.seconds",
    ],
    "token-issuance": ["grants_per_second", "grants_per_second_per_core"],
    "stack-start": [
        "warm.seconds_to_ready",
        "warm.component_seconds_to_ready.keycloak",
        "keycloak_start_dev.seconds_to_ready",
        "warm_vs_keycloak_start_dev.ratio",
    ],
    "rotation": ["throughput_ratio", "without_rotation.calls_per_second", "during_rotation.calls_per_second"],
    "cost-growth": [
        "at_size.100.token_grants_per_second",
        "mcp_server_rss_mib_with_revocations_held.0.mcp-server",
        "mcp_server_rss_mib_with_revocations_held.100.mcp-server",
        *[f"at_size.100.rss_mib.{name}" for name in ("keycloak", "broker", "mcp-server")],
    ],
    "peers": ["mock_oauth2_server.seconds_to_ready", "mock_oauth2_server.rss_mib_at_ready"],
    "certify": ["runs_per_revision", "slowest_revision_median.seconds"],
    "suite": [],  # read from the newest `make test` record, when there is one (this very run writes it at its end)
}
#: The targets table's rows judged in a quick run (the others are report rows, or figures only a full run has).
JUDGED = {
    ("revocation", 0),
    ("auth-overhead", 1),
    ("auth-overhead", 2),
    ("provisioning", 3),
    ("stack-start", 4),
    ("certify", 10),
}


def _at(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"no {path!r} (missing {key!r})"
        value = value[key]
    return value


def test_quick_bench_reports_every_figure_of_all_ten_and_the_targets_table(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    out, plot, markdown = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "RESULTS.md"
    command = [MCP_SANDBOX, "bench", "--quick", "--json", str(out), "--plot", str(plot), "--markdown", str(markdown)]
    env = {**os.environ, **sandbox_stack.settings.as_environment()}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert len(report["machine"]["load_average_at_start"]) == 3
    assert isinstance(report["seconds"], float)
    results = report["results"]
    assert set(results) == BENCHMARKS
    for name, figures in results.items():
        assert "error" not in figures, (name, figures["error"])
        for path in SUMMARIES[name]:
            summary = _at(figures, path)
            assert isinstance(summary, dict) and summary.keys() >= SUMMARY, (name, path, summary)
            assert summary["n"] >= 1
        for path in NUMBERS[name]:
            assert isinstance(_at(figures, path), int | float), (name, path)
    assert _at(results["stack-start"], "warm.peak_rss_mib").keys() >= {"keycloak", "broker", "mcp-server"}
    rotation = results["rotation"]
    assert rotation["first_secret_refused_after_graces_ended"] is True
    assert rotation["latest_secret_accepted"] is True

    growth = results["cost-growth"]
    if "1000" in growth["at_size"]:  # quick mode grows to 1,000 agents unless its time budget runs out first
        assert growth["at_size"]["1000"]["agents"] == 1000
        assert isinstance(_at(growth, "provision_at_1000_vs_100.ratio"), float)
        assert isinstance(_at(growth, "grants_at_1000_vs_100.ratio"), float)
    else:
        assert "time budget ran out" in growth["at_size"]["stopped"], growth["at_size"]
    assert growth["at_size"]["100"]["agents"] == 100 and growth["at_size"]["100"]["agents_listed"] >= 100

    peer = results["peers"]["mock_oauth2_server"]
    assert all(isinstance(value, bool) for key, value in peer["measured"].items() if key != "revocation_answer_status")
    assert all({"what", "measured", "sandbox"} <= row.keys() for row in peer["cannot_do"])

    rows = report["targets"]
    assert len(rows) == 11
    for index, row in enumerate(rows):
        assert {"benchmark", "figure", "target", "measured", "target_met", "note"} <= row.keys()
        if row["benchmark"] == "suite":  # judged when a whole-suite run is recorded here, else said why not
            assert row["note"] and (row["target_met"] is None) == (row["measured"] is None), row
        elif (row["benchmark"], index) in JUDGED:
            assert isinstance(row["measured"], int | float) and isinstance(row["target_met"], bool), row
            assert row["target_met"] or row["note"], row  # a missed target says why, from the run's figures
        else:
            assert row["target_met"] is None and row["note"], row
    start_dev = next(row for row in rows if row["figure"].startswith("ours warm against Keycloak start-dev"))
    assert isinstance(start_dev["measured"], float) and start_dev["note"] == "reported, not judged"
    quick_only = next(row for row in rows if row["figure"].startswith("token grants/s at 10,000"))
    assert quick_only["measured"] is None and "not measured" in quick_only["note"]

    assert plot.read_bytes().startswith(b"\x89PNG")
    page = markdown.read_text()
    assert "## Targets" in page
    assert all(f"| {row['benchmark']} | {row['figure']} | {row['target']} |" in page for row in rows)
    assert all(f"## {name}:" in page for name in BENCHMARKS)


def test_server_without_auth_serves_calls_without_a_token_and_says_so(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings

    async def probe() -> tuple[dict[str, Any], httpx.Response, httpx.Response]:
        async with reference_server(settings, sandbox_stack.tenants[0], no_auth=True) as url:
            health = httpx.get(url.removesuffix("/mcp") + "/health").json()
            opened = mcp_http.post(url, mcp_http.INITIALIZE)
            session = opened.headers.get("mcp-session-id")
            call = mcp_http.post(url, mcp_http.tool_call(TOOL, ARGUMENTS), session=session)
        return health, opened, call

    health, opened, call = asyncio.run(probe())
    assert health["auth"] == "none"
    assert opened.status_code == 200 and mcp_http.served(call), (opened.status_code, call.status_code, call.text)
    # The control: the stack's own server refuses the same request without a token.
    assert mcp_http.post(settings.mcp_server("jwt").url, mcp_http.INITIALIZE).status_code == 401
