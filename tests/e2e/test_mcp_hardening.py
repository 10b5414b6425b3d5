"""The reference MCP server under hostile or broken conditions: fuzzed Authorization headers, oversized requests,
keys and introspection out of reach, DNS rebinding, forged revocation events. Each refusal has its control."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference_mcp import (
    INITIALIZE,
    Agents,
    FakeBroker,
    agents_for,
    call_tool,
    fake_issuer,
    mcp_server,
    open_session,
    post,
    push_event,
    tool_result,
)

from sandbox.certify.forge import b64json
from sandbox.loopback_ca import CA_FILE, trusting
from sandbox.pytest_plugin import SandboxStack


@pytest.fixture
def agents(sandbox_stack: SandboxStack) -> Iterator[Agents]:
    yield from agents_for(sandbox_stack)


@pytest.fixture(scope="module")
def fuzz_token(sandbox_stack: SandboxStack) -> Iterator[str]:
    factory = next(agents_for(sandbox_stack))
    try:
        yield factory.create(["mcp:tool:invoices.read"]).token()
    finally:
        factory.delete_all()


VISIBLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=400)
B64 = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=300)
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40), st.lists(st.text(max_size=10)))
HEADERS = st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "jwk", "b64", "x5u"]), JSON_VALUES)
CLAIMS = st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nbf", "scope", "azp", "typ"]), JSON_VALUES
)


@pytest.mark.reliability(
    "Hostile input",
    "Fuzzed Authorization headers at the MCP server (mutated real tokens, forged headers and claims, garbage)",
    "400 or 401 every time, never served, never 5xx",
)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_authorization_headers_never_give_a_5xx_or_an_accepted_call(
    sandbox_stack: SandboxStack, fuzz_token: str, data: st.DataObject, reliability: Any
) -> None:
    """Property: whatever the Authorization header holds (except the one real token), the answer is 400 or 401."""
    header_b64, payload_b64, signature_b64 = fuzz_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    position = data.draw(st.integers(0, len(fuzz_token) - 1))
    mutated = (
        st.sampled_from(
            [
                fuzz_token[:position],  # truncated
                fuzz_token[:position] + fuzz_token[position + 1 :],  # one character dropped
                fuzz_token[:position] + "A" + fuzz_token[position:],  # one inserted
            ]
        )
        | st.builds(lambda c: fuzz_token[:position] + c + fuzz_token[position + 1 :], st.sampled_from("AQgw_-x."))
    )
    forged = st.builds(lambda h, c, s: f"{b64json(h)}.{b64json(c)}.{s}", HEADERS, CLAIMS, B64) | st.builds(
        lambda c: f"{header_b64}.{b64json({**claims, **c})}.{signature_b64}", CLAIMS
    )
    credentials = st.one_of(
        VISIBLE,
        st.builds(lambda t: f"{t[0]}.{t[1]}.{t[2]}", st.tuples(B64, B64, B64)),
        forged,
        mutated,
    )
    scheme = data.draw(st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "", "Basic ", "Token "]))
    value = (scheme + data.draw(credentials)).strip()
    assume(value.partition(" ")[2].strip() != fuzz_token)
    response = post(sandbox_stack.settings.mcp_url, INITIALIZE, headers={"Authorization": value})
    assert response.status_code in (400, 401), (value[:80], response.status_code, response.text[:200])
    reliability.add()


def test_the_fuzzed_property_holds_for_the_real_token_too_as_a_control(
    sandbox_stack: SandboxStack, fuzz_token: str
) -> None:
    assert post(sandbox_stack.settings.mcp_url, INITIALIZE, token=fuzz_token).status_code == 200


@pytest.mark.reliability(
    "Hostile input",
    "Oversize requests at the MCP server: 9 KB token, 20 KB and 1 MB header blocks, 2 MiB body",
    "401 / 431 / 413 / dropped, never served; a normal request after is served",
)
def test_oversized_tokens_headers_and_bodies_are_refused(
    sandbox_stack: SandboxStack, agents: Agents, reliability: Any
) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    assert post(url, INITIALIZE, token="A" * 9000).status_code == 401
    reliability.add()
    assert post(url, INITIALIZE, token=token, headers={"X-Padding": "p" * 20_000}).status_code == 431
    reliability.add()
    huge = post(url, b'{"jsonrpc":"2.0","id":1,"method":"ping","pad":"' + b"x" * (2 * 1024 * 1024) + b'"}', token=token)
    assert huge.status_code == 413
    reliability.add()
    try:
        enormous = post(url, INITIALIZE, token=token, headers={"X-Padding": "p" * 1_000_000})
        assert 400 <= enormous.status_code < 500
    except httpx.HTTPError:
        pass  # the HTTP parser may drop such a connection outright; either way it is not served
    reliability.add()
    assert post(url, INITIALIZE, token=token).status_code == 200  # control


def test_malformed_requests_with_a_valid_token_are_400(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    session = open_session(url, token)
    for body in (
        b"{not json",
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"invoices.list"}}]',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"invoices.list","name":"invoices.create"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}',
    ):
        assert post(url, body, token=token, session=session).status_code == 400, body
    assert tool_result(call_tool(url, token, session, "invoices.list"))  # control
    assert post(url, b"{not json").status_code == 401  # without a token the answer is still 401


def test_dns_rebinding_protection_checks_host_and_origin(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    port = url.split(":")[2].split("/")[0]
    assert post(url, INITIALIZE, token=token, headers={"Host": f"evil.example:{port}"}).status_code == 421
    assert post(url, INITIALIZE, token=token, headers={"Origin": "http://evil.example"}).status_code == 403
    assert post(url, INITIALIZE, headers={"Host": f"evil.example:{port}"}).status_code == 421  # before any token
    assert post(url, INITIALIZE, token=token, headers={"Host": f"localhost:{port}"}).status_code == 200  # controls
    assert post(url, INITIALIZE, token=token, headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200


def test_fail_closed_when_keys_cannot_be_fetched(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    with (
        fake_issuer() as issuer,
        mcp_server(sandbox_stack.settings, tmp_path, mode="jwt", issuers=[issuer.issuer]) as server,
    ):
        issuer.jwks_up = False
        token = issuer.token(server.url)
        refused = post(server.url, INITIALIZE, token=token)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        issuer.jwks_up = True
        assert post(server.url, INITIALIZE, token=token).status_code == 200  # control: the keys are back


def test_fail_closed_when_introspection_cannot_be_reached(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    env = {"SANDBOX_MCP_INTROSPECTION_SECRET": "unused-by-the-stand-in"}
    with (
        fake_issuer() as issuer,
        mcp_server(sandbox_stack.settings, tmp_path, mode="introspect", issuers=[issuer.issuer], env=env) as server,
    ):
        issuer.introspection_up = False
        token = issuer.token(server.url)
        assert post(server.url, INITIALIZE, token=token).status_code == 503
        issuer.introspection_up = True
        assert post(server.url, INITIALIZE, token=token).status_code == 200  # control


def test_the_stack_server_refuses_revocation_events_the_broker_did_not_sign(
    sandbox_stack: SandboxStack, agents: Agents
) -> None:
    settings = sandbox_stack.settings
    base = settings.mcp_url.removesuffix("/mcp")
    agent = agents.create(["mcp:tool:invoices.read"])
    token = agent.token()
    impostor = FakeBroker(base=settings.broker_url)  # the broker's name, another key
    forged = impostor.revocation(settings.mcp_url, agent)
    refused = push_event(base, forged)
    assert refused.status_code == 400 and refused.json()["err"] in ("invalid_key", "authentication_failed")
    assert push_event(base, forged, content_type="application/json").status_code == 400
    assert post(settings.mcp_url, INITIALIZE, token=token).status_code == 200  # control: nothing was revoked


def test_the_stack_server_listens_on_loopback_only(sandbox_stack: SandboxStack) -> None:
    state = sandbox_stack.state.components["mcp-server"]
    assert state.url == sandbox_stack.settings.mcp_url
    root = psutil.Process(state.process.pid)  # type: ignore[union-attr]
    listening = [
        c.laddr
        for p in [root, *root.children(recursive=True)]
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    # Exactly its two listeners, plain HTTP and TLS (client certificates of the loopback CA), and every one of
    # them on loopback.
    stack = sandbox_stack.settings
    assert sorted(a.port for a in listening) == sorted([stack.mcp_port, stack.mcp_tls_port]), listening
    assert all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
    assert httpx.get(state.health_url).json()["mode"] == "jwt+events"
    tls_health = stack.mcp_server("jwt+events").tls_url.removesuffix("/mcp") + "/health"
    assert httpx.get(tls_health, verify=trusting(stack.tls_dir / CA_FILE)).json()["mode"] == "jwt+events"
