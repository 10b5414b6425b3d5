"""certify: a whole `mcp-sandbox certify` run against the stack's reference server (jwt+events), per MCP revision:
the command's wall time from start to exit (World set-up, every check, clean-up), several runs back to back."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.bench.stack_start import MCP_SANDBOX
from sandbox.bench.stats import summarize

#: The MCP revisions certify checks (``mcp-sandbox certify --spec``); the bench runs the command, as a user does.
REVISIONS = ("2025-11-25", "2026-07-28")
#: The whole run's target, median, against the reference server on a warm stack and an idle machine.
TARGET_SECONDS = 20.0


async def _certify_once(context: BenchContext, revision: str, report: Path) -> tuple[float, int, str]:
    settings = context.settings
    manifest = settings.fixtures_dir / "certify" / "reference-server.yaml"
    command = [MCP_SANDBOX, "certify", "--url", settings.mcp_url, "--manifest", str(manifest)]
    command += ["--spec", revision, "--strict", "--json", str(report)]
    env = {**os.environ, **settings.as_environment()}
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    seconds = time.perf_counter() - began
    lines = (stdout or stderr).decode().strip().splitlines()
    return seconds, process.returncode or 0, lines[-1] if lines else ""


@benchmark("certify", "certify: a whole run against the stack's reference server, per MCP revision")
async def certify_run(context: BenchContext) -> dict[str, Any]:
    runs = context.size(5, 2)
    results: dict[str, Any] = {"runs_per_revision": runs, "server": context.settings.mcp_url}
    with tempfile.TemporaryDirectory(prefix="bench-certify-") as scratch:
        for revision in REVISIONS:
            walls, verdicts = [], []
            for index in range(runs):
                seconds, code, last = await _certify_once(context, revision, Path(scratch) / f"{revision}-{index}.json")
                if code != 0:
                    raise RuntimeError(f"certify --spec {revision} exited {code}: {last}")
                walls.append(seconds)
                verdicts.append(last)
            results[revision] = {"wall": summarize(walls, unit="s"), "verdict": verdicts[-1]}
    slowest = max(results[revision]["wall"]["median"] for revision in REVISIONS)
    spread = "; ".join(
        f"{revision}: min {results[revision]['wall']['min']} s, median {results[revision]['wall']['median']} s, "
        f"max {results[revision]['wall']['max']} s"
        for revision in REVISIONS
    )
    results["slowest_revision_median"] = target(
        f"< {TARGET_SECONDS:g} s",
        f"{slowest} s",
        slowest < TARGET_SECONDS,
        f"{spread}. A run lasts about as long as jwks-rollover's wait for the server's key cache (the stack's "
        "server keeps keys 10 s and refetches for an unknown kid at most every 10 s), plus set-up and clean-up, "
        "which the machine's load lengthens (see load_average_at_start); a run right after `up` is the slowest",
    )
    results["slowest_revision_median"]["seconds"] = slowest
    return results
