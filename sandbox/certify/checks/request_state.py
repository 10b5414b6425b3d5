"""request-state: a multi-round-trip ``requestState`` is the server's to trust only as it minted it, for whom."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.agent.mcp_http import rpc_message
from sandbox.certify.context import Context, check
from sandbox.certify.manifest import RequestStateProbe
from sandbox.certify.model import mcp_at
from sandbox.certify.revision import CLIENT_CAPABILITIES_KEY, STATELESS

if TYPE_CHECKING:
    from sandbox.certify.world import World

MRTR = "basic/patterns/mrtr"
#: The longest certify waits for a requestState to lapse; a longer declared lifetime is not examined.
LIFETIME_WAIT_LIMIT = 30.0
#: Seconds past the declared lifetime before the lapsed state is presented (clock granularity, the server's work).
LAPSE_MARGIN = 1.0
#: The client capabilities certify declares on the probe's calls: it answers form elicitation.
ANSWERS = {"elicitation": {"form": {}}}
OTHER_PRINCIPAL = "another principal"


def _result(response: httpx.Response) -> dict[str, Any]:
    found = (rpc_message(response) or {}).get("result") if response.status_code == 200 else None
    return found if isinstance(found, dict) else {}


def completed(response: httpx.Response) -> bool:
    """The retry was carried out: a result that is not another request for input."""
    result = _result(response)
    return bool(result) and result.get("resultType", "complete") == "complete"


def tampered(state: str) -> str:
    """``state`` with one character in its middle changed."""
    middle = len(state) // 2
    return state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1 :]


def prepare_agents(world: World) -> None:
    """The owner and the other principal, made before the run's first check."""
    probe = world.manifest.request_state
    if probe is not None and probe.tool in world.manifest.tools:
        scope = world.manifest.tools[probe.tool].scope
        world.prepare_agents([frozenset({scope})])
        world.agent({scope}, label=OTHER_PRINCIPAL).token()


@check(
    "request-state",
    "MUST",
    "Refuses a tampered, foreign or lapsed requestState",
    "The manifest's request_state tool, called by a client declaring form elicitation, answers with an "
    "InputRequiredResult carrying a requestState. Its retry with the declared inputResponses is carried out for "
    "the principal it was minted for; it is not carried out (an error, or another request for input) with one "
    "character of the state changed, for another agent holding the same scopes, or after the declared lifetime.",
    mcp_at(STATELESS, MRTR, "Server Requirements (Basic Workflow)", "server-requirements-basic-workflow"),
    mcp_at(STATELESS, MRTR, "Security Considerations", "security-considerations"),
    revisions=(STATELESS,),
    prepare=prepare_agents,
)
def request_state(ctx: Context) -> None:
    probe = ctx.manifest.request_state
    if probe is None:
        ctx.skip("the manifest names no tool that asks for more input (request_state: {tool, arguments, responses})")
    scope = ctx.manifest.tools[probe.tool].scope
    owner = ctx.world.agent({scope}).token()
    other = ctx.world.agent({scope}, label=OTHER_PRINCIPAL).token()

    def minted() -> tuple[str, float]:
        asked = ctx.send(ctx.wire.request("tools/call", _first_params(probe)), owner)
        when = time.monotonic()
        result = _result(asked)
        state = result.get("requestState")
        ctx.control(
            f"{probe.tool} asks for more input with a requestState",
            result.get("resultType") == "input_required" and isinstance(state, str) and bool(state),
            asked,
        )
        return str(state), when

    def retry(token: str, state: str) -> httpx.Response:
        return ctx.send(ctx.wire.request("tools/call", _retry_params(probe, state)), token)

    # The state that must lapse is minted first: the other cases run while its lifetime passes.
    lapsing = minted() if probe.lifetime is not None and probe.lifetime <= LIFETIME_WAIT_LIMIT else None
    honest = retry(owner, minted()[0])
    ctx.control(f"the owner's retry with the untouched requestState completes {probe.tool}", completed(honest), honest)
    cases = {
        "one character of the requestState changed": retry(owner, tampered(minted()[0])),
        "the requestState presented by another agent with the same scopes": retry(other, minted()[0]),
    }
    if lapsing is not None and probe.lifetime is not None:
        state, when = lapsing
        time.sleep(max(0.0, when + probe.lifetime + LAPSE_MARGIN - time.monotonic()))
        cases[f"the requestState presented after its lifetime ({probe.lifetime:g} s)"] = retry(owner, state)
    else:
        why = "declares no lifetime" if probe.lifetime is None else f"declares a lifetime of {probe.lifetime:g} s"
        ctx.not_examined(
            "a lapsed requestState", f"the manifest {why}, certify waits at most {LIFETIME_WAIT_LIMIT:g} s"
        )
    for label, response in cases.items():
        ctx.expect(f"{label}: the retry is not carried out", not completed(response), response)


def _first_params(probe: RequestStateProbe) -> dict[str, Any]:
    """The first call, from a client that can answer the questions a multi-round-trip tool asks (form
    elicitation): a server must not ask a client for input it did not declare it can give."""
    return {"name": probe.tool, "arguments": probe.arguments, "_meta": {CLIENT_CAPABILITIES_KEY: ANSWERS}}


def _retry_params(probe: RequestStateProbe, state: str) -> dict[str, Any]:
    return {**_first_params(probe), "inputResponses": probe.responses, "requestState": state}
