"""``mcp-sandbox certify --url URL``: run every check of a revision against a server, print the verdict, write the
reports.

Exit codes: 0 certified (every check passed, or failed as the expected-failures file says; with ``--strict``
no SHOULD check failed either), 1 not certified (a check failed unexpectedly, or an expected failure is
stale), 2 certify could not run (settings, manifest, the sandbox). The last line says which, with the counts
per level and every check not examined. certify takes no secret on its command line: the sandbox's admin
credentials come from the environment (``SANDBOX_KEYCLOAK_ADMIN_CLIENT_SECRET``) or the stack's secrets file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sandbox.certify.baseline import CANNOT_RUN, Verdict, evaluate, load_expected_failures
from sandbox.certify.checks import CHECK_IDS, checks_for
from sandbox.certify.manifest import default_manifest, load_manifest
from sandbox.certify.model import CheckResult
from sandbox.certify.report.checks_json import write_checks_json
from sandbox.certify.report.html import write_html
from sandbox.certify.report.junit import write_junit
from sandbox.certify.report.sarif import write_sarif
from sandbox.certify.revision import REVISIONS, Revision
from sandbox.certify.runner import run_checks
from sandbox.certify.summary import last_line, root_causes, shorten
from sandbox.certify.world import World
from sandbox.cli_errors import fail, writable_file
from sandbox.config import load_settings
from sandbox.errors import SandboxError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
COLOURS = {"SUCCESS": "green", "FAILURE": "red", "WARNING": "yellow", "SKIPPED": "dim"}
#: How much of a check's message the console shows under it (the reports keep it whole).
SHOWN = 400


def certify(
    url: Annotated[str, typer.Option("--url", help="The MCP endpoint (canonical URL) of the server to certify.")],
    spec: Annotated[
        Revision | None,
        typer.Option("--spec", help="The MCP revision to check (default: the newest one the server accepts)."),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="A SHOULD check that fails fails the run too.")] = False,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Tool scopes and probes, revocation, tenant data, upstream.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write checks.json (conformance shape).")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit-xml", help="Write JUnit XML.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")] = None,
    sarif_path: Annotated[Path | None, typer.Option("--sarif", help="Write SARIF 2.1.0 (code scanning).")] = None,
    expected_failures: Annotated[
        Path | None, typer.Option("--expected-failures", help="YAML baseline of checks allowed to fail (server: […]).")
    ] = None,
    only: Annotated[list[str] | None, typer.Option("--check", help="Run only this check (repeatable).")] = None,
) -> None:
    """Certify an MCP server's auth behaviour against the sandbox's Keycloak: one check per requirement.

    Exit codes: 0 certified, 1 not certified, 2 certify could not run.
    """
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
        with World(settings, declared, url) as world:
            revision = spec or world.newest_revision()
            _refuse_checks_of_other_revisions(only or [], revision)
            chosen = [c for c in checks_for(revision) if not only or c.spec.id in only]
            out.print(f"certify {url} for MCP {revision}", highlight=False)
            results = run_checks(world, chosen, revision=revision, progress=_print_result)
    except ValueError as exc:
        _cannot_run(SandboxError(f"invalid settings: {exc}".replace("\n", " "), "fix the SANDBOX_* variable named"))
    except SandboxError as error:
        _cannot_run(error)
    verdict = evaluate(results, allowed, strict=strict)
    if json_path:
        write_checks_json(results, url, json_path)
    if junit_path:
        write_junit(results, url, junit_path)
    if html_path:
        write_html(results, url, verdict, html_path)
    if sarif_path:
        write_sarif(results, url, sarif_path, manifest)
    _print_verdict(results, verdict)
    raise typer.Exit(verdict.exit_code)


def _refuse_checks_of_other_revisions(only: list[str], revision: Revision) -> None:
    elsewhere = sorted(set(only) - {c.spec.id for c in checks_for(revision)})
    if elsewhere:
        others = ", ".join(r for r in REVISIONS if r != revision)
        raise SandboxError(
            f"{', '.join(elsewhere)} is not a check of MCP {revision}", f"drop it, or pass --spec {others}"
        )


def _print_result(result: CheckResult) -> None:
    colour = COLOURS[result.status]
    line = f"[{colour}]{result.status:<8}[/] {result.id:<21} {result.spec.level:<8} {result.spec.name}"
    out.print(line, highlight=False)
    for text in [result.message, *result.remarks] if result.message else result.remarks:
        out.print(f"         [dim]{shorten(text, SHOWN)}[/]", highlight=False)


def _print_verdict(results: list[CheckResult], verdict: Verdict) -> None:
    counts = {status: sum(1 for r in results if r.status == status) for status in COLOURS}
    out.print("\n" + ", ".join(f"{n} {status.lower()}" for status, n in counts.items() if n), highlight=False)
    if verdict.expected:
        out.print(f"expected failures: {', '.join(verdict.expected)}", highlight=False)
    for cause in root_causes(results):
        out.print(f"[yellow]likely root cause:[/] {cause}", highlight=False)
    colour = "green" if verdict.exit_code == 0 else "red"
    out.print(f"[{colour}]{last_line(results, verdict)}[/]", highlight=False)


def _cannot_run(error: SandboxError) -> None:
    fail(error, CANNOT_RUN)


def register(app: typer.Typer) -> None:
    app.command(name="certify")(certify)
