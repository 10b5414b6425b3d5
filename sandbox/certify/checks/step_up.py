"""single-challenge, no-offline-access: what 2026-07-28 asks of the scopes a server challenges for."""

from __future__ import annotations

from sandbox.agent.challenge import bearer_challenge
from sandbox.agent.mcp_http import served
from sandbox.certify.checks.common import accepted_token
from sandbox.certify.checks.metadata import served_documents
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp_at
from sandbox.certify.revision import STATELESS

OFFLINE_ACCESS = "offline_access"


@check(
    "single-challenge",
    "SHOULD",
    "Names every scope an operation needs in one 403 challenge",
    "For each declared tool, served to an agent holding its scope, an agent holding another tool's scope is "
    "refused with a 403 challenge; an agent holding that scope and every declared scope the one challenge named "
    "is then served the call, with no second challenge (no scope asked for one at a time). A refusal that is no "
    "403 with scopes is 403-scope's finding, not this one's.",
    mcp_at(STATELESS, "basic/authorization", "Runtime Insufficient Scope Errors", "runtime-insufficient-scope-errors"),
    revisions=(STATELESS,),
)
def single_challenge(ctx: Context) -> None:
    scopes = ctx.manifest.scopes()
    if len(scopes) < 2:
        ctx.skip(f"the manifest declares one scope ({scopes[0]}): no agent can be refused for lack of another")
    challenged = []
    for tool, probe in ctx.manifest.tools.items():
        own = ctx.call(ctx.world.agent({probe.scope}).token(), None, tool, probe.arguments)
        ctx.control(f"{tool} is served to an agent holding {probe.scope}", served(own), own)
        held = next(scope for scope in scopes if scope != probe.scope)
        refused = ctx.call(ctx.world.agent({held}).token(), None, tool, probe.arguments)
        challenge = bearer_challenge(refused) if refused.status_code == 403 else None
        hinted = set(challenge.scopes) & set(scopes) if challenge is not None else set()
        if not hinted:
            ctx.note(f"{tool}: no 403 challenge naming a declared scope (see 403-scope and tool-scope)", refused)
            continue
        challenged.append((tool, probe, held, hinted))
    # The agents holding what each challenge named are made side by side, then each retries.
    ctx.world.prepare_agents([frozenset({held, *hinted}) for _, _, held, hinted in challenged])
    for tool, probe, held, hinted in challenged:
        retried = ctx.call(ctx.world.agent({held, *hinted}).token(), None, tool, probe.arguments)
        ctx.expect(
            f"{tool}: an agent holding {held} and what the one challenge named ({' '.join(sorted(hinted))}) is "
            "served, with no second challenge",
            served(retried),
            retried,
        )
    examined = len(challenged)
    if not examined:
        ctx.skip("no tool call was refused with a 403 challenge naming a declared scope (see 403-scope)")


@check(
    "no-offline-access",
    "SHOULD",
    "Never asks for offline_access",
    "`offline_access` is in no challenge (a 401 to the opening request and to a tool call, a 403 to a tool "
    "call without its scope) and not in the protected resource metadata's `scopes_supported`: refresh tokens "
    "are no resource's requirement.",
    mcp_at(STATELESS, "basic/authorization", "Refresh Tokens", "refresh-tokens"),
    revisions=(STATELESS,),
)
def no_offline_access(ctx: Context) -> None:
    accepted_token(ctx)
    tool, probe = next(iter(ctx.manifest.tools.items()))
    others = set(ctx.manifest.scopes()) - {probe.scope}
    answers = {
        f"the 401 to {ctx.wire.opening_method}": ctx.opening(),
        f"the 401 to a {tool} call": ctx.call(None, None, tool, probe.arguments),
    }
    if others:
        answers[f"the 403 to a {tool} call without {probe.scope}"] = ctx.call(
            ctx.world.agent(others).token(), None, tool, probe.arguments
        )
    for label, response in answers.items():
        challenge = bearer_challenge(response)
        named = challenge.scopes if challenge is not None else []
        ctx.expect(f"{label} does not ask for {OFFLINE_ACCESS}", OFFLINE_ACCESS not in named, response)
    for url, document, response in served_documents(ctx):
        supported = document.get("scopes_supported") or []
        ctx.expect(
            f"the metadata at {url} does not list {OFFLINE_ACCESS} in scopes_supported",
            OFFLINE_ACCESS not in supported,
            response,
            f"scopes_supported: {' '.join(map(str, supported))}",
        )
