"""Stack start: `mcp-sandbox up` to ready, from an empty cache and a warm one; peak memory per component."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.config import load_settings
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.launcher import Stack
from sandbox.stack.ports import private_stack_environment
from sandbox.stack.process import peak_rss_bytes
from sandbox.stack.state import load_state

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")
WARM_TARGET_SECONDS = 12


async def _start_once(workdir: Path, cache_dir: Path | None, zip_path: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, **private_stack_environment(workdir / "state")}
    if cache_dir is not None:
        env["SANDBOX_CACHE_DIR"] = str(cache_dir)
    if zip_path is not None:
        env["SANDBOX_KEYCLOAK_DIST"] = str(zip_path)
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        MCP_SANDBOX, "up", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    seconds = time.perf_counter() - began
    settings = load_settings(state_dir=workdir / "state")
    try:
        if process.returncode != 0:
            raise RuntimeError(f"mcp-sandbox up failed: {stderr.decode()[-500:]}")
        state = load_state(settings)
        assert state is not None
        peaks = {
            name: round(peak_rss_bytes(entry.process) / 2**20, 1)
            for name, entry in state.components.items()
            if entry.process is not None
        }
        ready = {name: entry.details.get("seconds_to_ready") for name, entry in state.components.items()}
    finally:
        stopper = await asyncio.create_subprocess_exec(MCP_SANDBOX, "down", env=env, stdout=asyncio.subprocess.DEVNULL)
        await stopper.wait()
    return {"seconds_to_ready": round(seconds, 2), "component_seconds_to_ready": ready, "peak_rss_mib": peaks}


@benchmark("stack-start", "mcp-sandbox up to ready, cold and warm; peak RSS per component")
async def stack_start(context: BenchContext) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as scratch:
        root = Path(scratch)
        if not context.quick:
            # Cold: an empty sandbox cache; Keycloak is unpacked and built from the cached zip (no download: the
            # sandbox talks to loopback only, and a download's time says more about the network than the sandbox).
            cached_zip = KeycloakDistribution(context.settings).zip_path
            zip_path = cached_zip if cached_zip.is_file() else None
            results["cold"] = await _start_once(root / "cold", cache_dir=root / "empty-cache", zip_path=zip_path)
            shutil.rmtree(root / "empty-cache", ignore_errors=True)
        results["warm"] = await _start_once(root / "warm", cache_dir=None)
    warm = results["warm"]["seconds_to_ready"]
    ready = results["warm"]["component_seconds_to_ready"]
    others = max((seconds or 0.0 for name, seconds in ready.items() if name != "keycloak"), default=0.0)
    why = (
        f"Keycloak took {ready.get('keycloak')} s of it: its JVM and Quarkus starting (on a copy of the seeded "
        f"database: no schema or master realm to create), then the tenant realms; the Python components, started "
        f"side by side once Keycloak was ready, took {others} s more; the rest is the command's own checks"
    )
    results["warm"].update(target(f"under {WARM_TARGET_SECONDS} s", f"{warm} s", warm < WARM_TARGET_SECONDS, why))
    results["components"] = [component.name for component in Stack(context.settings).components]
    if context.quick:
        results["note"] = "quick mode measures the warm start only"
    return results
