"""get_token's binding check: a token bound to what the agent holds (DPoP key, client certificate) or to nothing."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.agent.tokens import Token
from sandbox.scenarios.library import StepFailed
from sandbox.scenarios.steps.tools import check_binding


def token(cnf: dict[str, Any] | None, token_type: str) -> Token:
    claims = {"sub": "agent"} if cnf is None else {"sub": "agent", "cnf": cnf}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return Token(f"e30.{payload}.sig", expires_at=0, scope="", token_type=token_type)


def agent(*, dpop: str | None = None, certificate: str | None = None) -> Any:
    held = lambda thumbprint: None if thumbprint is None else SimpleNamespace(thumbprint=thumbprint)  # noqa: E731
    return SimpleNamespace(name="bot", dpop=held(dpop), certificate=held(certificate))


@pytest.mark.parametrize(
    ("binding", "holder", "bound"),
    [
        ("bearer", agent(), token(None, "Bearer")),
        ("dpop", agent(dpop="k1"), token({"jkt": "k1"}, "DPoP")),
        ("mtls", agent(certificate="c1"), token({"x5t#S256": "c1"}, "Bearer")),
    ],
)
def test_a_token_bound_as_expected_passes(binding: str, holder: Any, bound: Token) -> None:
    check_binding(holder, bound, binding, {})


@pytest.mark.parametrize(
    ("binding", "holder", "bound", "says"),
    [
        ("bearer", agent(), token({"jkt": "k1"}, "DPoP"), "an unbound bearer token"),
        ("dpop", agent(), token({"jkt": "k1"}, "DPoP"), "to hold a DPoP key"),
        ("dpop", agent(dpop="k1"), token({"jkt": "k2"}, "DPoP"), "cnf.jkt k1"),
        ("dpop", agent(dpop="k1"), token({"jkt": "k1"}, "Bearer"), "a DPoP token"),
        ("mtls", agent(), token({"x5t#S256": "c1"}, "Bearer"), "to hold a client certificate"),
        ("mtls", agent(certificate="c1"), token({"x5t#S256": "c2"}, "Bearer"), "cnf.x5t#S256 c1"),
        ("mtls", agent(certificate="c1"), token(None, "Bearer"), "bound to the agent's client certificate"),
    ],
)
def test_any_other_token_fails_naming_what_was_expected(binding: str, holder: Any, bound: Token, says: str) -> None:
    with pytest.raises(StepFailed) as failed:
        check_binding(holder, bound, binding, {})
    assert says in str(failed.value)
