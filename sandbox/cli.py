"""The ``mcp-sandbox`` command."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table

from sandbox.agent import mcp_http
from sandbox.broker.agent_cli import register as register_agent_commands
from sandbox.broker.cli import register as register_broker_commands
from sandbox.certify.cli import register as register_certify_command
from sandbox.cli_errors import fail, guarded, run_command_line, writable_file
from sandbox.config import DEFAULT_IDP, IdpName, Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.idp.realm import ADMIN_USERNAME, DEMO_CLIENT_ID, TOKEN_PATH
from sandbox.stack.launcher import ComponentStatus, Stack
from sandbox.stack.state import StateDamaged, load_state
from sandbox.stack_secrets import Secrets
from sandbox.versions import versions

app = typer.Typer(
    name="mcp-sandbox",
    help="A local sandbox for the identity lifecycle of AI agents on MCP servers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _print_version(asked: bool) -> None:
    if asked:
        found = versions()
        rest = ", ".join(f"{name} {value}" for name, value in found.items() if name != "mcp-sandbox")
        sys.stdout.write(f"mcp-sandbox {found['mcp-sandbox']} ({rest})\n")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the versions and exit."),
    ] = False,
) -> None:
    """A local sandbox for the identity lifecycle of AI agents on MCP servers."""


def _settings(runtime: str | None = None, idp: str | None = None) -> Settings:
    """The settings; their runtime (and agents' IdP) the one asked for, else that of the stack the state file
    describes."""
    asked = {name: value for name, value in (("runtime", runtime), ("idp", idp)) if value is not None}
    settings = guarded(lambda: load_settings(**asked))
    try:
        state = load_state(settings)
    except StateDamaged:
        return settings  # `down` sweeps without it; the other commands say so in words
    if state is None or not state.components:
        return settings
    if state.idp != settings.idp:
        if idp is not None:
            fail(
                SandboxError(
                    f"a stack with its agents on {state.idp} is running in {settings.state_dir}",
                    "stop it first (mcp-sandbox down), or give this one its own SANDBOX_STATE_DIR",
                )
            )
        settings = settings.model_copy(update={"idp": state.idp})
    if state.hydra_pool != settings.hydra_pool:  # `down` and `status` in another shell find the pool's Hydras
        settings = settings.model_copy(update={"hydra_pool": state.hydra_pool})
    if state.runtime == settings.runtime:
        return settings
    if runtime is not None:
        fail(
            SandboxError(
                f"a stack of the {state.runtime} runtime is running in {settings.state_dir}",
                "stop it first (mcp-sandbox down), or give this one its own SANDBOX_STATE_DIR",
            )
        )
    return settings.model_copy(update={"runtime": state.runtime})


@app.command()
def up(
    runtime: Annotated[
        Literal["local", "docker"] | None,
        typer.Option("--runtime", help="local (processes; the default) or docker (containers); or SANDBOX_RUNTIME."),
    ] = None,
    idp: Annotated[
        IdpName | None,
        typer.Option(
            "--idp",
            help="the agents' IdP: keycloak (the default) or hydra (one Ory Hydra per tenant, built once with Go; "
            "people stay on Keycloak); or SANDBOX_IDP.",
        ),
    ] = None,
) -> None:
    """Start the stack (Keycloak with the sandbox tenants, and the sandbox services) and wait until ready."""
    settings = _settings(runtime, idp)
    guarded(lambda: Stack(settings).up())
    print_info(settings)


@app.command()
def down() -> None:
    """Stop every component of the stack; no process is left behind."""
    settings = _settings()
    stopped = guarded(lambda: Stack(settings).down())
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show each component: state, URL, pid, memory (and where the logs are; --json names each log).

    Exits 0 when every component is running and healthy, 1 when any is not (stopped, dead or unhealthy).
    """
    settings = _settings()
    report = guarded(lambda: Stack(settings).status())
    if as_json:
        print(json.dumps({"components": [asdict(entry) for entry in report]}, indent=2))
    else:
        _print_status(settings, report)
    down = [entry for entry in report if entry.state != "running"]
    if len(down) == len(report):
        fail(SandboxError("the stack is not running", "start it with `mcp-sandbox up`"))
    if down:
        named = ", ".join(f"{entry.name} ({entry.state})" for entry in down)
        fail(SandboxError(f"not running: {named}", "see `mcp-sandbox logs COMPONENT`, then `mcp-sandbox up`"))


def _print_status(settings: Settings, report: list[ComponentStatus]) -> None:
    # Each log is <component>.log in one directory, named once below, so 80 columns show each URL whole.
    table = Table(
        Column("component", no_wrap=True),
        Column("state", no_wrap=True),
        Column("url", no_wrap=True),
        "pid",
        Column("memory", no_wrap=True),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=f"logs: {settings.log_dir}/COMPONENT.log  (or: mcp-sandbox logs COMPONENT)",
        caption_justify="left",
    )
    colours = {"running": "green", "stopped": "dim", "dead": "red", "unhealthy": "yellow"}
    for entry in report:
        memory = f"{entry.memory_bytes / 2**20:.0f} MiB" if entry.memory_bytes else ""
        state = f"[{colours[entry.state]}]{entry.state}[/]"
        table.add_row(entry.name, state, entry.url or "", str(entry.pid or ""), memory)
    out.print(table)


@app.command()
def logs(
    component: Annotated[str | None, typer.Argument(help="Component name; all when omitted.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
) -> None:
    """Print a component's log."""
    settings = _settings()
    state = guarded(lambda: load_state(settings))
    known = sorted(state.components) if state else []
    if component is not None and component not in known:
        fail(
            SandboxError(
                f"no component {component!r} in the running stack (known: {', '.join(known) or 'none'})",
                "check `mcp-sandbox status` and start it with `mcp-sandbox up`",
            )
        )
    paths = [Path(state.components[name].log) for name in ([component] if component else known)] if state else []
    paths = [path for path in paths if path.is_file()]
    if not paths:
        fail(SandboxError("no logs to show: the stack has not been started", "start it with `mcp-sandbox up`"))
    command = ["tail", f"-n{lines}", *(["-F"] if follow else []), *map(str, paths)]
    raise typer.Exit(subprocess.call(command))


@app.command()
def info() -> None:
    """Print where everything is: URLs, the admin login, and a curl that gets a token."""
    print_info(_settings())


@app.command("mcp-server")
def mcp_server(
    issuer: Annotated[
        list[str] | None,
        typer.Option(
            "--issuer",
            help="An issuer to trust (repeatable): URL, or TENANT=URL to name the tenant its callers act in "
            "(the sandbox's own issuers are named without it).",
        ),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port on 127.0.0.1; default SANDBOX_MCP_PORT.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="Token validation: jwt, introspect or jwt+events.")] = "jwt",
    broker_url: Annotated[
        str | None, typer.Option("--broker-url", help="The broker: trust list, revocation events, usage reports.")
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="FOR BENCHMARKS ONLY: check no token; every caller acts with every scope in the first --issuer's "
            "tenant (loopback only, like every sandbox server).",
        ),
    ] = False,
) -> None:
    """Run the reference MCP server alone, in the foreground; its canonical URL is http://<host>:<port>/mcp."""
    from functools import partial

    from sandbox.mcp_server.options import ServerOptions
    from sandbox.mcp_server.server import serve
    from sandbox.stack.ports import ensure_free

    settings = _settings()
    chosen = port or settings.mcp_port
    standalone = partial(
        ServerOptions.standalone, settings, port=chosen, mode=mode, broker_url=broker_url, no_auth=no_auth
    )
    options = guarded(lambda: standalone(issuers=issuer or []))
    guarded(lambda: ensure_free(settings.host, chosen, "mcp server", "--port"))
    auth = "NO AUTH, for benchmarks only" if options.no_auth else options.mode
    err.print(f"MCP server {options.canonical_url} ({auth}), trusting: {', '.join(options.issuers) or '-'}")
    serve(options)


def print_info(settings: Settings) -> None:
    state = guarded(lambda: load_state(settings))
    if state is None:
        fail(SandboxError("the stack is not running", "start it with `mcp-sandbox up`"))
        return
    secrets = Secrets(settings)
    out.print()
    width = max(len(name) for name in state.components)
    for entry in state.components.values():
        out.print(f"[bold]{entry.name:<{width}}[/]  {entry.url}   [dim]log: {entry.log}[/]")
    tenants = state.tenant_issuers
    for tenant, issuer in tenants.items():
        out.print(f"  tenant [bold]{tenant}[/]  issuer {issuer}")
    for entry in state.components.values():
        if "admin_url" in entry.details:  # a tenant's Hydra: the agents' issuer of that tenant
            out.print(
                f"  tenant [bold]{entry.details['tenant']}[/]  agents' issuer {entry.details['issuer']}  "
                f"(Ory Hydra; admin API {entry.details['admin_url']})"
            )
    for entry in state.components.values():
        if "admin_console" in entry.details:  # the IdP the stack started itself, not an external one
            out.print(
                f"  admin console {entry.details['admin_console']}  "
                f"login {ADMIN_USERNAME} / {secrets.get(ADMIN_USERNAME)}  [dim](regenerated on every up)[/]"
            )
    if tenants:
        tenant = next(iter(tenants))
        out.print("\nGet a client-credentials token from a tenant realm (demo client, regenerated on every up):")
        out.print(curl_for_token(settings, tenant, secrets), soft_wrap=True, highlight=False)
        out.print(
            "\nCall the reference MCP server as an agent: provision one through the broker "
            f"(mcp-sandbox agents provision -t {tenant} …), export MCP_AGENT_CLIENT_SECRET=<its secret>, then:"
        )
        for line in agent_commands(settings, tenant):
            out.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)


def agent_commands(settings: Settings, tenant: str, agent_id: str = "<agent-id>") -> list[str]:
    """Shell lines that get a sandbox agent's token for the reference server and list the agent's tools with curl
    (its secret in MCP_AGENT_CLIENT_SECRET; the server keeps a session, so curl initializes one first)."""
    url = settings.mcp_url
    headers = "-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'"
    version = mcp_http.PROTOCOL_VERSION
    initialize = json.dumps(mcp_http.initialize("curl"), separators=(",", ":"))
    list_tools = json.dumps(mcp_http.message("tools/list", request_id=2), separators=(",", ":"))
    return [
        f"TOKEN=$(mcp-sandbox agents token -t {tenant} {agent_id})",
        f'SESSION=$(curl -s -o /dev/null -D - -H "Authorization: Bearer $TOKEN" {headers} '
        f"-d '{initialize}' {url} | tr -d '\\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: *//p')",
        f'curl -s -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SESSION" -H "MCP-Protocol-Version: {version}" '
        f"{headers} -d '{list_tools}' {url}",
    ]


def curl_for_token(settings: Settings, tenant: str, secrets: Secrets) -> str:
    secret = secrets.get(f"{tenant}/{DEMO_CLIENT_ID}") or ""
    token_url = f"{settings.issuer(tenant)}{TOKEN_PATH}"
    return f"curl -s -d grant_type=client_credentials -u {shlex.quote(f'{DEMO_CLIENT_ID}:{secret}')} {token_url}"


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Scenario files, or directories of them.")],
    junit_xml: Annotated[Path | None, typer.Option("--junit-xml", help="Write a JUnit XML report here.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report here.")] = None,
    idp: Annotated[
        IdpName,
        typer.Option(
            "--idp",
            help="where the scenarios' tenants keep their agents: keycloak, or hydra (a Hydra each, lent from "
            "the stack's pool: start it with SANDBOX_HYDRA_POOL)",
        ),
    ] = DEFAULT_IDP,
) -> None:
    """Run scenarios against the running stack; every file is checked before anything runs."""
    from sandbox.scenarios.catalog import Catalog
    from sandbox.scenarios.html import write_html
    from sandbox.scenarios.junit import write_junit
    from sandbox.scenarios.loader import load_scenario, scenario_files
    from sandbox.scenarios.runner import run_scenarios

    settings = _settings()
    for target, option in ((junit_xml, "--junit-xml"), (report, "--report")):
        if target is not None:
            guarded(lambda target=target, option=option: writable_file(target, option))
    files = scenario_files(paths)
    if not files:
        fail(SandboxError(f"no scenario files in {', '.join(map(str, paths))}", "name .yaml files or their directory"))
    catalog = guarded(lambda: Catalog.from_settings(settings))  # the stack's policy and tool map
    scenarios = guarded(lambda: [load_scenario(path, catalog) for path in files])
    results = []
    for scenario in scenarios:
        err.print(f"[bold]{scenario.name}[/]: {scenario.header.description.strip()}", highlight=False)
        (result,) = run_scenarios(settings, [scenario], idp)
        results.append(result)
        for step in result.steps:
            colour = {"passed": "green", "failed": "red", "error": "red", "not supported": "yellow"}.get(
                step.outcome, "dim"
            )
            err.print(f"  [{colour}]{step.describe()}[/]", highlight=False)
        if result.setup_error:
            err.print(f"  [red]{result.setup_error}[/]", highlight=False)
    if junit_xml:
        write_junit(results, junit_xml)
    if report:
        write_html(results, report, versions(settings))
    passed = sum(result.passed for result in results)
    unsupported = [result for result in results if result.not_supported is not None]
    out.print(
        f"{passed} of {len(results)} scenarios passed"
        + (f", {len(unsupported)} not supported by the IdP" if unsupported else "")
    )
    for result in results:
        if result in unsupported:
            err.print(f"[yellow]NOT SUPPORTED[/] {result.summary()}", highlight=False)
        elif not result.passed:
            err.print(f"[red]FAILED[/] {result.summary()}", highlight=False)
    if passed + len(unsupported) != len(results):
        raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (published as scenarios/scenario.schema.json)."""
    from sandbox.scenarios.schema import schema_text

    sys.stdout.write(schema_text())


@app.command()
def bench(
    names: Annotated[list[str] | None, typer.Argument(help="Benchmarks to run; all when omitted.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the latency distributions here.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown results page here.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sample sizes: a smoke test, not a measurement.")
    ] = False,
) -> None:
    """Measure the running stack: each benchmark's median, p95, p99, min, max and n, side by side."""
    import asyncio
    from functools import partial

    from sandbox.bench.runner import failed, run_benchmarks, write_markdown, write_plot

    settings = _settings()
    state = guarded(lambda: load_state(settings))
    if state is None or not state.components:
        fail(SandboxError("the stack is not running", "start it with `mcp-sandbox up`, then measure it"))
    for target, option in ((json_path, "--json"), (plot, "--plot"), (markdown, "--markdown")):
        if target is not None:
            guarded(lambda target=target, option=option: writable_file(target, option))
    command = " ".join(["mcp-sandbox", *sys.argv[1:]])
    progress = partial(err.print, highlight=False)  # one line per benchmark as it starts and ends
    report, context = guarded(
        lambda: asyncio.run(run_benchmarks(settings, names or [], quick=quick, command=command, progress=progress))
    )
    text = json.dumps(report, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
    if plot:
        write_plot(context, plot, report)
    if markdown:
        write_markdown(report, markdown, plot)
    if failed(report):
        fail(SandboxError(f"benchmarks failed: {', '.join(failed(report))}", "see their `error` in the JSON"))


register_broker_commands(app)  # broker, admin, tenants, agents, servers, apply, audit
register_certify_command(app)  # certify
register_agent_commands(app)  # call, tools


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(run_command_line(app))


if __name__ == "__main__":  # pragma: no cover
    main()
