"""jwks-rollover: the server follows its issuer's signing keys, the new one at once and a withdrawn one soon."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from sandbox.agent.mcp_http import served
from sandbox.certify.checks.common import POLL_INTERVAL, accepted_token
from sandbox.certify.context import Context, check
from sandbox.certify.forge import Signer, fresh_times
from sandbox.certify.model import mcp, rfc

if TYPE_CHECKING:
    from sandbox.certify.world import World

#: The longest certify waits for a withdrawn key to be refused; a longer declared key_cache is not examined.
WITHDRAWAL_WAIT_LIMIT = 60.0

Done = Callable[[httpx.Response], bool]


def poll(ctx: Context, token: str, done: Done, budget: float) -> tuple[httpx.Response, float]:
    """The opening request with ``token`` until ``done`` holds or ``budget`` seconds pass; the last answer."""
    began = time.monotonic()
    while True:
        response = ctx.opening(token)
        elapsed = time.monotonic() - began
        if done(response) or elapsed >= budget:
            return response, elapsed
        time.sleep(POLL_INTERVAL)


def prepare_withdrawable_key(world: World) -> None:
    world.publish_withdrawable_key()


@check(
    "jwks-rollover",
    "MUST",
    "Follows its issuer's key rollover",
    "certify publishes a new signing key in the issuer's JWKS (a key it holds, beside the realm's own, which it "
    "never disables: other users of the realm keep their tokens): a token signed with the new kid is served "
    "within the manifest's new_key_budget, so the server refetches keys for a kid it does not know. Meanwhile a "
    "second key certify published before the run's first request is withdrawn as soon as a token signed with it "
    "is served: that token is answered 401 within the key_cache the manifest declares.",
    mcp("Token Handling", "token-handling"),
    rfc(7517, "4.5", '"kid" (Key ID) Parameter'),
    rfc(8414, "2", "Authorization Server Metadata (jwks_uri)"),
    prepare=prepare_withdrawable_key,
)
def jwks_rollover(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    world = ctx.world
    earlier = world.withdrawable_key()
    signer = world.publish_key()
    budget = ctx.manifest.new_key_budget
    cache = ctx.manifest.key_cache
    if cache is None or cache > WITHDRAWAL_WAIT_LIMIT:
        world.withdraw_key(earlier)
        why = "declares no key_cache" if cache is None else f"declares a key_cache of {cache:g} s"
        ctx.not_examined("a withdrawn key", f"the manifest {why}, certify waits at most {WITHDRAWAL_WAIT_LIMIT:g} s")
        answer, waited = poll(ctx, world.known.add(signer.sign(fresh_times(claims))), served, budget)
        _judge_new_key(ctx, signer.kid, budget, answer, waited)
        world.withdraw_key(signer)
        return
    rollover = Rollover(ctx, world.known.add(signer.sign(fresh_times(claims))), budget)
    withdrawal = Withdrawal(ctx, world, earlier, world.known.add(earlier.sign(fresh_times(claims))), budget, cache)
    while not (rollover.over and withdrawal.over):  # both waits side by side: each is the server's cache ageing
        for wait in (rollover, withdrawal):
            if not wait.over:
                wait.step()
        if not (rollover.over and withdrawal.over):
            time.sleep(POLL_INTERVAL)
    world.withdraw_key(signer)
    assert rollover.answer is not None
    _judge_new_key(ctx, signer.kid, budget, rollover.answer, rollover.waited)
    withdrawal.judge()


def _judge_new_key(ctx: Context, kid: str | None, budget: float, answer: httpx.Response, waited: float) -> None:
    ctx.expect(
        f"a token signed with a key the issuer newly publishes (kid {kid}) is served within {budget:g} s",
        served(answer),
        answer,
        f"after {waited:.1f} s: HTTP {answer.status_code}",
    )


class Rollover:
    """A token of the newly published key, presented until it is served or the new-key budget ends."""

    def __init__(self, ctx: Context, token: str, budget: float) -> None:
        self.ctx, self.token, self.budget = ctx, token, budget
        self.began = time.monotonic()
        self.answer: httpx.Response | None = None
        self.waited = 0.0
        self.over = False

    def step(self) -> None:
        self.answer = self.ctx.opening(self.token)
        self.waited = time.monotonic() - self.began
        self.over = served(self.answer) or self.waited >= self.budget


class Withdrawal:
    """A token of a key published before the run: presented until it is served (then the key is withdrawn), and
    after the withdrawal until it is answered 401 or the key_cache ends."""

    def __init__(self, ctx: Context, world: World, signer: Signer, token: str, budget: float, cache: float) -> None:
        self.ctx, self.world, self.signer, self.token = ctx, world, signer, token
        self.budget, self.cache = budget, cache
        self.began = time.monotonic()
        self.shown: httpx.Response | None = None  # the last answer before the withdrawal
        self.shown_after = 0.0
        self.withdrawn_at: float | None = None
        self.refused: httpx.Response | None = None
        self.refused_after = 0.0
        self.over = False

    def step(self) -> None:
        if self.withdrawn_at is None:
            self.shown = self.ctx.opening(self.token)
            self.shown_after = time.monotonic() - self.began
            if served(self.shown):
                self.world.withdraw_key(self.signer)
                self.withdrawn_at = time.monotonic()
            elif self.shown_after >= self.budget:
                self.world.withdraw_key(self.signer)
                self.over = True
            return
        self.refused = self.ctx.opening(self.token)
        self.refused_after = time.monotonic() - self.withdrawn_at
        self.over = self.refused.status_code == 401 or self.refused_after >= self.cache

    def judge(self) -> None:
        assert self.shown is not None
        kid = self.signer.kid
        self.ctx.expect(
            f"a token signed with a key the issuer published before the run's first request (kid {kid}) is served "
            f"within {self.budget:g} s",
            served(self.shown),
            self.shown,
            f"after {self.shown_after:.1f} s: HTTP {self.shown.status_code}",
        )
        if self.refused is None:
            return
        self.ctx.expect(
            f"once the issuer withdraws that key, a token signed with it is answered 401 within {self.cache:g} s "
            "(key_cache)",
            self.refused.status_code == 401,
            self.refused,
            f"after {self.refused_after:.1f} s: HTTP {self.refused.status_code}",
        )
