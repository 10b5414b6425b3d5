"""request-state: a multi-round-trip ``requestState`` is the server's to trust only as it minted it, for whom."""

from __future__ import annotations

import time
from typing import Any

import httpx

from sandbox.agent.mcp_http import rpc_message
from sandbox.certify.context import Context, check
from sandbox.certify.manifest import RequestStateProbe
from sandbox.certify.model import mcp_at
from sandbox.certify.revision import STATELESS

MRTR = "basic/patterns/mrtr"
#: The longest certify waits for a requestState to lapse; a longer declared lifetime is not examined.
LIFETIME_WAIT_LIMIT = 30.0


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


@check(
    "request-state",
    "MUST",
    "Refuses a tampered, foreign or lapsed requestState",
    "The manifest's request_state tool answers with an InputRequiredResult carrying a requestState. Its retry "
    "with the declared inputResponses is carried out for the principal it was minted for; it is not carried out "
    "(an error, or another request for input) with one character of the state changed, for another agent "
    "holding the same scopes, or after the declared lifetime.",
    mcp_at(STATELESS, MRTR, "Server Requirements (Basic Workflow)", "server-requirements-basic-workflow"),
    mcp_at(STATELESS, MRTR, "Security Considerations", "security-considerations"),
    revisions=(STATELESS,),
)
def request_state(ctx: Context) -> None:
    probe = ctx.manifest.request_state
    if probe is None:
        ctx.skip("the manifest names no tool that asks for more input (request_state: {tool, arguments, responses})")
    scope = ctx.manifest.tools[probe.tool].scope
    owner = ctx.world.agent({scope}).token()
    other = ctx.world.agent({scope}, label="another principal").token()

    def minted() -> str:
        asked = ctx.call(owner, None, probe.tool, probe.arguments)
        result = _result(asked)
        state = result.get("requestState")
        ctx.control(
            f"{probe.tool} asks for more input with a requestState",
            result.get("resultType") == "input_required" and isinstance(state, str) and bool(state),
            asked,
        )
        return str(state)

    def retry(token: str, state: str) -> httpx.Response:
        return ctx.send(ctx.wire.request("tools/call", _retry_params(probe, state)), token)

    cases = {
        "one character of the requestState changed": retry(owner, tampered(minted())),
        "the requestState presented by another agent with the same scopes": retry(other, minted()),
    }
    if probe.lifetime is not None and probe.lifetime <= LIFETIME_WAIT_LIMIT:
        state = minted()
        time.sleep(probe.lifetime + 1)
        cases[f"the requestState presented after its lifetime ({probe.lifetime:g} s)"] = retry(owner, state)
    else:
        why = "declares no lifetime" if probe.lifetime is None else f"declares a lifetime of {probe.lifetime:g} s"
        ctx.remark(f"a lapsed requestState was not examined: the manifest {why} (certify waits at most 30 s)")
    for label, response in cases.items():
        ctx.expect(f"{label}: the retry is not carried out", not completed(response), response)
    honest = retry(owner, minted())
    ctx.control(f"the owner's retry with the untouched requestState completes {probe.tool}", completed(honest), honest)


def _retry_params(probe: RequestStateProbe, state: str) -> dict[str, Any]:
    return {"name": probe.tool, "arguments": probe.arguments, "inputResponses": probe.responses, "requestState": state}
