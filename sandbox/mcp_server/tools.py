"""The tools: a small, realistic set over each tenant's data. The caller's tenant comes from its verified token.

Every tool here has exactly one entry in the tool map (``fixtures/tools.yaml``); :func:`build_mcp`
refuses to start otherwise, so no tool can be called without a scope decision.
"""

# No `from __future__ import annotations`: the SDK reads these signatures, and `Environment` is local.
import datetime
import json
from typing import Annotated, Any, Literal

from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.request_state import RequestStateSecurity
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import Field

from sandbox.errors import SandboxError
from sandbox.mcp_server.principal import Principal, principal_in
from sandbox.mcp_server.scoping import ToolPolicy, ToolScopeMiddleware
from sandbox.mcp_server.tenant_data import SAVED_QUERIES, TenantData, TenantDirectory

#: tools/list shows each caller only the tools it may call: a cache must never hand it to another token.
CACHE_HINTS: dict[Any, CacheHint] = {"tools/list": CacheHint(ttl_ms=0, scope="private")}
#: The revision that asks for more input with an InputRequiredResult (multi round-trip requests).
MULTI_ROUND_TRIP = "2026-07-28"
#: The key of analytics.export's one input request, and the formats it offers.
EXPORT_QUESTION = "export_format"
EXPORT_FORMATS = ("csv", "json")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def caller(ctx: Context) -> Principal:
    request = ctx.request_context.request
    principal = principal_in(request.scope) if request is not None else None
    if principal is None:
        raise ToolError("no authenticated caller")  # unreachable over HTTP: /mcp refuses requests without a token
    return principal


def _answer(responses: Any, key: str) -> dict[str, Any] | None:
    """The accepted form content of one input response, None when it is missing or was not accepted."""
    found = (responses or {}).get(key)
    if found is not None and not isinstance(found, dict):
        found = found.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(found, dict) or found.get("action") != "accept" or not isinstance(found.get("content"), dict):
        return None
    return found["content"]


def _export_rows(rows: list[dict[str, Any]], chosen: str) -> str:
    if chosen == "json":
        return json.dumps(rows)
    columns = list(rows[0]) if rows else []
    return "\n".join([",".join(columns), *(",".join(str(row[c]) for c in columns) for row in rows)])


def _analytics(data: TenantData, query: str, days: int) -> dict[str, Any]:
    """A saved query over the tenant's recent events."""
    recent = data.events[-days:]
    if query == "daily_active_users":
        rows: list[dict[str, Any]] = [{"day": e["day"], "active_users": e["active_users"]} for e in recent]
    elif query == "signups_by_country":
        totals: dict[str, int] = {}
        for event in recent:
            totals[event["country"]] = totals.get(event["country"], 0) + event["signups"]
        rows = [{"country": c, "signups": n} for c, n in sorted(totals.items(), key=lambda item: -item[1])]
    else:
        months: dict[str, int] = {}
        for event in recent:
            months[event["day"][:7]] = months.get(event["day"][:7], 0) + event["revenue_cents"]
        rows = [{"month": m, "revenue_cents": n, "currency": data.currency} for m, n in months.items()]
    return {"tenant": data.tenant, "query": query, "days": days, "rows": rows}


def build_mcp(policy: ToolPolicy, directory: TenantDirectory, request_state_ttl: float = 600.0) -> MCPServer:
    """The SDK server with the tools. ``request_state_ttl``: seconds a requestState this server mints stays valid
    (the SDK seals it with AES-GCM, bound to the caller, the tool and its arguments)."""
    mcp = MCPServer(
        "mcp-sandbox-reference",
        title="mcp-agent-sandbox reference MCP server",
        instructions="Tools over your tenant's data. Each tool needs its own scope; tools/list shows yours.",
        version="0.1.0",
        middleware=[ToolScopeMiddleware(policy)],
        cache_hints=CACHE_HINTS,
        request_state_security=RequestStateSecurity.ephemeral(ttl=request_state_ttl),
    )
    environments = policy.toolmap.environments
    Environment = Literal[environments]  # type: ignore[valid-type]

    def tenant(ctx: Context) -> TenantData:
        return directory[caller(ctx).tenant]

    registered: list[str] = []

    def tool(name: str, annotations: ToolAnnotations) -> Any:
        registered.append(name)
        entry = policy.toolmap.tools.get(name)
        return mcp.tool(name=name, description=entry.description if entry else None, annotations=annotations)

    @tool("analytics.query", READ_ONLY)
    async def analytics_query(
        ctx: Context,
        query: Annotated[Literal[SAVED_QUERIES], Field(description="A saved query.")],  # type: ignore[valid-type]
        days: Annotated[int, Field(ge=1, le=90, description="How many recent days.")] = 7,
    ) -> dict[str, Any]:
        return _analytics(tenant(ctx), query, days)

    @tool("analytics.export", READ_ONLY)
    async def analytics_export(
        ctx: Context,
        query: Annotated[Literal[SAVED_QUERIES], Field(description="A saved query.")],  # type: ignore[valid-type]
        days: Annotated[int, Field(ge=1, le=90, description="How many recent days.")] = 7,
    ) -> dict[str, Any] | InputRequiredResult:
        """Asks the caller which format to export in (multi round-trip requests), then exports in it."""
        version = ctx.protocol_version
        if version is None or not is_version_at_least(version, MULTI_ROUND_TRIP):
            raise ToolError(f"analytics.export asks which format to export in, which needs MCP {MULTI_ROUND_TRIP}")
        answer = _answer(ctx.input_responses, EXPORT_QUESTION) if ctx.request_state is not None else None
        chosen = answer.get("format") if answer is not None else None
        if chosen in EXPORT_FORMATS:
            result = _analytics(tenant(ctx), query, days)
            return {
                "tenant": result["tenant"],
                "query": query,
                "format": chosen,
                "export": _export_rows(result["rows"], chosen),
            }
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.elicitation is None:
            raise ToolError(
                "analytics.export asks which format to export in: call it from a client that declares elicitation"
            )
        question = ElicitRequest(
            params=ElicitRequestFormParams(
                message=f"Export {query} over the last {days} days: in which format?",
                requested_schema={
                    "type": "object",
                    "properties": {"format": {"type": "string", "enum": list(EXPORT_FORMATS)}},
                    "required": ["format"],
                },
            )
        )
        # The state names the round; the SDK seals it (integrity, caller, tool and arguments, lifetime).
        return InputRequiredResult(
            input_requests={EXPORT_QUESTION: question}, request_state=json.dumps({"asked": EXPORT_QUESTION})
        )

    @tool("invoices.list", READ_ONLY)
    async def invoices_list(
        ctx: Context,
        status: Literal["open", "paid", "overdue"] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        customer: Annotated[str | None, Field(max_length=200)] = None,
    ) -> dict[str, Any]:
        data = tenant(ctx)
        found = [
            invoice
            for invoice in data.invoices
            if (status is None or invoice["status"] == status) and (customer is None or invoice["customer"] == customer)
        ]
        return {"tenant": data.tenant, "company": data.company, "invoices": found[:limit], "total": len(found)}

    @tool("invoices.create", WRITES)
    async def invoices_create(
        ctx: Context,
        customer: Annotated[str, Field(min_length=1, max_length=200)],
        amount_cents: Annotated[int, Field(gt=0, le=1_000_000_000)],
        due_in_days: Annotated[int, Field(ge=1, le=365)] = 30,
    ) -> dict[str, Any]:
        data = tenant(ctx)
        now = datetime.datetime.now(datetime.UTC)
        invoice = {
            "id": data.next_invoice_id(),
            "tenant": data.tenant,
            "customer": customer,
            "amount_cents": amount_cents,
            "currency": data.currency,
            "status": "open",
            "issued_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "due_at": (now + datetime.timedelta(days=due_in_days)).date().isoformat(),
            "created_by": caller(ctx).client_id,
        }
        data.invoices.append(invoice)
        return {"tenant": data.tenant, "invoice": invoice}

    @tool("logs.read", READ_ONLY)
    async def logs_read(
        ctx: Context,
        service: Annotated[
            str | None, Field(min_length=1, max_length=100, description="One service; every service when omitted.")
        ] = None,
        level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        data = tenant(ctx)
        if service is not None and service not in data.logs:
            raise ToolError(f"no service {service!r} in this tenant; its services: {', '.join(data.services)}")
        chosen = [service] if service is not None else data.services
        lines = sorted(
            (line for name in chosen for line in data.logs[name] if level is None or line["level"] == level),
            key=lambda line: line["at"],
        )
        return {"tenant": data.tenant, "service": service, "lines": lines[-limit:]}

    @tool("deploy.status", READ_ONLY)
    async def deploy_status(ctx: Context) -> dict[str, Any]:
        data = tenant(ctx)
        return {"tenant": data.tenant, "deployments": list(data.deployments.values())}

    @tool("deploy.trigger", WRITES)
    async def deploy_trigger(
        ctx: Context,
        service: Annotated[str, Field(min_length=1, max_length=100)],
        environment: Environment,
        version: Annotated[str, Field(pattern=r"^\d{1,4}\.\d{1,4}\.\d{1,4}$")],
    ) -> dict[str, Any]:
        data = tenant(ctx)
        if (service, environment) not in data.deployments:
            raise ToolError(f"no service {service!r} in this tenant; its services: {', '.join(data.services)}")
        deployment = {
            "tenant": data.tenant,
            "service": service,
            "environment": environment,
            "version": version,
            "deployed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "deployed_by": caller(ctx).client_id,
        }
        data.deployments[(service, environment)] = deployment
        return {"tenant": data.tenant, "status": "deployed", "deployment": deployment}

    if set(registered) != set(policy.toolmap.tools):
        raise SandboxError(
            f"the tool map and the server's tools differ: {sorted(set(registered) ^ set(policy.toolmap.tools))}",
            "give every tool of sandbox/mcp_server/tools.py exactly one entry in fixtures/tools.yaml",
        )
    return mcp
