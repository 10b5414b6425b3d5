"""Stack start: `mcp-sandbox up` to ready, warm and from an empty cache but for the Keycloak zip ("cached zip");
peak memory per component; and, beside it, Keycloak alone started as testcontainers users do (``start-dev``)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.config import Settings, load_settings
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.java import find_jdk
from sandbox.stack.launcher import Stack
from sandbox.stack.ports import free_port, private_stack_environment
from sandbox.stack.process import is_alive, peak_rss_bytes, rss_bytes, spawn, stop
from sandbox.stack.readiness import wait_for_http
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


async def start_dev(settings: Settings, zip_path: Path, workdir: Path) -> dict[str, Any]:
    """Keycloak as testcontainers' tutorials start it: the plain distribution, ``start-dev``, an empty H2
    database, on loopback; from the start command to its master realm answering. Unpacking is not counted (an
    image has it done)."""
    home = await asyncio.to_thread(_unpack, zip_path, workdir)
    jdk = find_jdk(settings)
    port, management = free_port(settings.host), free_port(settings.host)
    command = [str(home / "bin" / "kc.sh"), "start-dev", f"--http-host={settings.host}", f"--http-port={port}"]
    command += [f"--http-management-port={management}", "--hostname-strict=false"]
    env = {
        "JAVA_HOME": str(jdk.home),
        "PATH": f"{jdk.home / 'bin'}:/usr/bin:/bin",
        "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": secrets.token_urlsafe(16),
    }
    log = workdir / "keycloak-start-dev.log"
    began = time.perf_counter()
    record = spawn(command, env=env, log_path=log)
    try:
        ready = f"http://{settings.host}:{port}/realms/master"
        alive = lambda: is_alive(record)  # noqa: E731
        await asyncio.to_thread(wait_for_http, "keycloak start-dev", ready, timeout=600, alive=alive, log=log)
        seconds = time.perf_counter() - began
        rss = round(rss_bytes(record) / 2**20, 1)
    finally:
        await asyncio.to_thread(stop, record)
    return {
        "seconds_to_ready": round(seconds, 2),
        "rss_mib_at_ready": rss,
        "command": "kc.sh start-dev (empty H2 database, the distribution as unpacked, loopback)",
    }


def _unpack(zip_path: Path, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(workdir)
    (home,) = [path for path in workdir.iterdir() if path.is_dir()]
    for script in (home / "bin").glob("*.sh"):
        script.chmod(0o755)
    return home


@benchmark("stack-start", "mcp-sandbox up to ready, warm and from a cached zip; Keycloak start-dev beside it")
async def stack_start(context: BenchContext) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as scratch:
        root = Path(scratch)
        cached_zip = KeycloakDistribution(context.settings).zip_path
        if not context.quick and cached_zip.is_file():
            # Not cold: an empty sandbox cache but for the Keycloak zip, which is handed over (no download: the
            # sandbox talks to loopback only, and a download's time says more about the network than the
            # sandbox). Keycloak is unpacked and built from it, hence "cached zip".
            cache = root / "empty-cache"
            results["cached_zip"] = await _start_once(root / "cached-zip", cache_dir=cache, zip_path=cached_zip)
            results["cached_zip"]["note"] = "an empty sandbox cache but for the Keycloak zip: unpacked and built"
            shutil.rmtree(cache, ignore_errors=True)
        results["warm"] = await _start_once(root / "warm", cache_dir=None)
        if cached_zip.is_file():
            results["keycloak_start_dev"] = await start_dev(context.settings, cached_zip, root / "start-dev")
    warm = results["warm"]["seconds_to_ready"]
    ready = results["warm"]["component_seconds_to_ready"]
    others = max((seconds or 0.0 for name, seconds in ready.items() if name != "keycloak"), default=0.0)
    why = (
        f"Keycloak took {ready.get('keycloak')} s of it: its JVM and Quarkus starting (on a copy of the seeded "
        f"database: no schema or master realm to create), then the tenant realms; the Python components, started "
        f"side by side once Keycloak was ready, took {others} s more; the rest is the command's own checks"
    )
    results["warm"].update(target(f"under {WARM_TARGET_SECONDS} s", f"{warm} s", warm < WARM_TARGET_SECONDS, why))
    dev = results.get("keycloak_start_dev")
    if dev is not None:
        results["warm_vs_keycloak_start_dev"] = {
            "ratio": round(warm / dev["seconds_to_ready"], 3),
            "note": "our whole stack's warm start over Keycloak alone started as testcontainers users do",
        }
    else:
        results["not_measured"] = {"warm_vs_keycloak_start_dev": "not measured: no cached Keycloak zip to start"}
    results["components"] = [component.name for component in Stack(context.settings).components]
    results["cold"] = (
        "not measured: a cold start (an empty cache, the zip included) downloads Keycloak, and the bench talks to "
        "loopback only"
    )
    if context.quick:
        results["note"] = "quick mode measures the warm start and Keycloak start-dev only"
    return results
