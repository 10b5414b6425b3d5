"""certify's agent pool: agents made side by side, each once per need, with their first tokens; one that fails
leaves the others recorded (so they are deleted at the end) and its error raised."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.tokens import Token
from sandbox.certify import agent_pool as agents_module
from sandbox.certify.agent_pool import AgentNeed, AgentPool
from sandbox.certify.evidence import KnownTokens
from sandbox.certify.loop import LoopThread
from sandbox.config import load_settings
from sandbox.errors import SandboxError
from sandbox.idp.provider import AgentClient, AgentClientSpec
from sandbox.oidc import IssuerMetadata

URL = "http://127.0.0.1:2/mcp"


class FakeAdapter:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, list[str]]] = []
        self.created: list[AgentClientSpec] = []
        self.running = 0
        self.most_at_once = 0
        self.refuse: set[str] = set()

    async def ensure_scopes(self, realm: str, scopes: list[str]) -> None:
        self.scopes.append((realm, scopes))

    async def create_agent_client(self, realm: str, spec: AgentClientSpec) -> AgentClient:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        if set(spec.scopes) & self.refuse:
            raise SandboxError(f"Keycloak refused {spec.client_id}", "check `mcp-sandbox status`")
        self.created.append(spec)
        return AgentClient(f"id-{spec.client_id}", spec.client_id, f"sa-{spec.client_id}", "secret")


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as made:
        yield made


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    issued: list[str] = []

    async def discovered(issuer: str) -> IssuerMetadata:
        return IssuerMetadata(issuer, f"{issuer}/token", f"{issuer}/auth", f"{issuer}/jwks")

    async def fetched(token_url: str, credential: Any, **_: Any) -> Token:
        issued.append(credential.client_id)
        return Token(f"token-of-{credential.client_id}", time.time() + 300, "basic")

    monkeypatch.setattr(agents_module, "discover_async", discovered)
    monkeypatch.setattr(agents_module, "fetch_token", fetched)
    return issued


def pool(tmp_path: Path, adapter: FakeAdapter, runner: asyncio.Runner) -> AgentPool:
    return AgentPool(load_settings(state_dir=tmp_path), adapter, runner, KnownTokens())  # type: ignore[arg-type]


def need(*scopes: str) -> AgentNeed:
    return AgentNeed("acme", frozenset(scopes), (URL,))


def test_agents_are_made_side_by_side_once_each_with_their_tokens(
    tmp_path: Path, runner: asyncio.Runner, tokens: list[str]
) -> None:
    adapter = FakeAdapter()
    agents = pool(tmp_path, adapter, runner)
    needs = [need("a"), need("b"), need("c"), need("a")]
    agents.prepare(needs)
    assert adapter.most_at_once == 3 and len(adapter.created) == 3
    assert adapter.scopes == [("acme", ["a", "b", "c"])]  # the client scopes once, before the agents
    assert sorted(tokens) == sorted(spec.client_id for spec in adapter.created)
    made = agents.get(need("b"))
    assert made.token() == f"token-of-{made.client_id}" and len(tokens) == 3  # the prepared token is kept
    agents.prepare(needs)
    assert len(adapter.created) == 3 and len(tokens) == 3  # nothing made or fetched twice


def test_one_refused_agent_raises_and_the_others_are_kept_for_clean_up(
    tmp_path: Path, runner: asyncio.Runner, tokens: list[str]
) -> None:
    adapter = FakeAdapter()
    adapter.refuse = {"b"}
    agents = pool(tmp_path, adapter, runner)
    with pytest.raises(SandboxError, match="Keycloak refused"):
        agents.prepare([need("a"), need("b")])
    assert agents.get(need("a")).client_id == adapter.created[0].client_id  # recorded, so deleted at the end


def test_checks_asking_side_by_side_get_one_agent_per_need(tmp_path: Path, tokens: list[str]) -> None:
    adapter = FakeAdapter()
    loop = LoopThread()
    try:
        agents = pool(tmp_path, adapter, loop)  # type: ignore[arg-type]
        with ThreadPoolExecutor(max_workers=4) as threads:
            made = list(threads.map(lambda _: agents.get(need("a")).client_id, range(8)))
    finally:
        loop.close()
    assert len(adapter.created) == 1 and set(made) == {adapter.created[0].client_id}
