"""The official MCP conformance suite (npm, pinned in the settings) against the agent side and the reference server.

Client scenarios run the project's agent code (``mcp-sandbox tools`` through ``conformance_client.py``) against the
suite's own authorization and MCP servers; server scenarios run the suite's client against the reference server,
with an agent's token. Every server the suite starts must listen on 127.0.0.1 only: the test watches its sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from bearer_forwarder import bearer_forwarder

from sandbox.config import load_settings
from sandbox.conformance.suite import ConformanceSuite, install
from sandbox.errors import SandboxError
from sandbox.harness.provisioning import ProvisionedAgent

HERE = Path(__file__).parent
CLIENT = HERE / "conformance_client.py"
EXPECTED_FAILURES = HERE / "conformance-expected-failures.yml"
RUN_BUDGET = 300  # seconds one suite invocation may take on a loaded machine


@pytest.fixture(scope="session")
def suite() -> ConformanceSuite:
    try:
        return install(load_settings())
    except SandboxError as error:
        pytest.fail(f"the conformance suite could not be installed: {error}", pytrace=False)


@contextmanager
def listening_addresses(process: subprocess.Popen[str]) -> Iterator[set[str]]:
    """Every address a listening socket of the process (or its children) was bound to while it ran."""
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        try:
            root = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                for each in [root, *root.children(recursive=True)]:
                    for connection in each.net_connections(kind="inet"):
                        if connection.status == psutil.CONN_LISTEN:
                            seen.add(connection.laddr.ip)
            except psutil.Error:
                pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def run_suite(suite: ConformanceSuite, *arguments: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    process = subprocess.Popen(suite.command(*arguments), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with listening_addresses(process) as addresses:
        try:
            output, _ = process.communicate(timeout=RUN_BUDGET)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"the conformance suite took over {RUN_BUDGET} s: {output[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, ""), addresses


def checks_of(output_dir: Path) -> list[dict[str, object]]:
    found = [check for path in sorted(output_dir.rglob("checks.json")) for check in json.loads(path.read_text())]
    assert found, f"the suite wrote no checks.json under {output_dir}"
    return found


@pytest.mark.parametrize(
    "scenario", ["auth/client-credentials-basic", "auth/client-credentials-jwt", "auth/pre-registration"]
)
def test_the_agent_client_passes_the_client_scenario(suite: ConformanceSuite, scenario: str) -> None:
    command = f"{sys.executable} {CLIENT}"
    # The suite records its mock servers' tokens and the agent's assertion in its results: read, then removed.
    with tempfile.TemporaryDirectory(prefix="conformance-client-") as results:
        done, addresses = run_suite(suite, "client", "--scenario", scenario, "--command", command, "-o", results)
        checks = checks_of(Path(results))
    failed = [f"{c['id']}: {c['description']}" for c in checks if c["status"] in ("FAILURE", "WARNING")]
    assert done.returncode == 0 and not failed, f"{failed or done.stdout[-3000:]}"
    assert any(c["status"] == "SUCCESS" and c["id"] == "token-request" for c in checks)
    assert addresses and addresses <= {"127.0.0.1"}, f"the suite listened on {sorted(addresses)}"


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
def test_the_reference_server_passes_every_applicable_server_scenario(
    suite: ConformanceSuite, sandbox_agent: Callable[..., ProvisionedAgent], revision: str, tmp_path: Path
) -> None:
    agent = sandbox_agent(role="invoice-writer")
    token = asyncio.run(agent.token())
    server_url = load_settings().mcp_url
    with bearer_forwarder(server_url, token.access_token) as url:
        done, addresses = run_suite(
            suite,
            "server",
            "--url",
            url,
            "--requirements",
            revision,
            "--expected-failures",
            str(EXPECTED_FAILURES),
            "-o",
            str(tmp_path),
        )
    checks = checks_of(tmp_path)
    verdict = [line for line in done.stdout.splitlines() if re.search(r"✗|stale|unexpected|Total", line, re.I)]
    assert done.returncode == 0, "\n".join(verdict) or done.stdout[-3000:]
    assert any(c["status"] == "SUCCESS" for c in checks)
    assert addresses <= {"127.0.0.1"}, f"the suite listened on {sorted(addresses)}"
