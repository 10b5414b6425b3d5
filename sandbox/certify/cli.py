"""``mcp-sandbox certify --url URL``: run every check against a server, print the verdict, write the reports.

Exit codes: 0 every MUST check passed (or failed as the expected-failures file says), 1 a MUST check failed
unexpectedly or an expected failure is stale, 2 certify could not run (settings, manifest, the sandbox).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sandbox.certify.baseline import Verdict, evaluate, load_expected_failures
from sandbox.certify.checks import CHECK_IDS, CHECKS
from sandbox.certify.manifest import default_manifest, load_manifest
from sandbox.certify.model import CheckResult
from sandbox.certify.report.checks_json import write_checks_json
from sandbox.certify.report.html import write_html
from sandbox.certify.report.junit import write_junit
from sandbox.certify.runner import run_checks
from sandbox.certify.world import World
from sandbox.cli_errors import fail, writable_file
from sandbox.config import load_settings
from sandbox.errors import SandboxError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
COLOURS = {"SUCCESS": "green", "FAILURE": "red", "WARNING": "yellow", "SKIPPED": "dim"}
CANNOT_RUN = 2


def certify(
    url: Annotated[str, typer.Option("--url", help="The MCP endpoint (canonical URL) of the server to certify.")],
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Tool scopes and probes, revocation, tenant data, upstream.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write checks.json (conformance shape).")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit-xml", help="Write JUnit XML.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")] = None,
    expected_failures: Annotated[
        Path | None, typer.Option("--expected-failures", help="YAML baseline of checks allowed to fail (server: […]).")
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--check", help="Run only this check (repeatable).")] = None,
) -> None:
    """Certify an MCP server's auth behaviour against the sandbox's Keycloak: one check per requirement."""
    try:
        for target, option in ((json_path, "--json"), (junit_path, "--junit-xml"), (html_path, "--html")):
            if target is not None:
                writable_file(target, option)
        settings = load_settings()
        declared = load_manifest(manifest, settings) if manifest else default_manifest(settings)
        allowed = load_expected_failures(expected_failures, CHECK_IDS) if expected_failures else set()
        unknown = sorted(set(only or []) - set(CHECK_IDS))
        if unknown:
            raise SandboxError(f"no check named {', '.join(unknown)}", f"use one of: {', '.join(CHECK_IDS)}")
        chosen = [c for c in CHECKS if not only or c.spec.id in only]
        with World(settings, declared, url) as world:
            results = run_checks(world, chosen, progress=_print_result)
    except SandboxError as error:  # settings (InvalidSettings) included
        _cannot_run(error)
    verdict = evaluate(results, allowed)
    if json_path:
        write_checks_json(results, url, json_path)
    if junit_path:
        write_junit(results, url, junit_path)
    if html_path:
        write_html(results, url, verdict, html_path)
    _print_verdict(results, verdict)
    raise typer.Exit(verdict.exit_code)


def _print_result(result: CheckResult) -> None:
    colour = COLOURS[result.status]
    line = f"[{colour}]{result.status:<8}[/] {result.id:<21} {result.spec.level:<8} {result.spec.name}"
    out.print(line, highlight=False)
    if result.message:
        out.print(f"         [dim]{result.message}[/]", highlight=False)


def _print_verdict(results: list[CheckResult], verdict: Verdict) -> None:
    counts = {status: sum(1 for r in results if r.status == status) for status in COLOURS}
    out.print("\n" + ", ".join(f"{n} {status.lower()}" for status, n in counts.items() if n), highlight=False)
    if verdict.expected:
        out.print(f"expected failures: {', '.join(verdict.expected)}", highlight=False)
    if verdict.stale:
        out.print(f"[red]stale expected failures (now passing; remove them):[/] {', '.join(verdict.stale)}")
    if verdict.unexpected:
        out.print(f"[red]MUST checks failed:[/] {', '.join(verdict.unexpected)}")
    out.print("[green]certified[/]" if verdict.exit_code == 0 else "[red]not certified[/]")


def _cannot_run(error: SandboxError) -> None:
    fail(error, CANNOT_RUN)


def register(app: typer.Typer) -> None:
    app.command(name="certify")(certify)
