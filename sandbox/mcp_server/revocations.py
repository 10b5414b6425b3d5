"""The revocation list of ``jwt+events`` mode: which agents' tokens to refuse, and until when.

A revocation of agent (issuer, client id) at time T refuses every token of that agent issued at or
before T. No such token can outlive T + the longest lifetime the server accepts (+ leeway), so the
entry is forgotten then. The same holds for the agent's subject (its service-account user). With a journal,
every entry is on disk before :meth:`RevocationList.add` returns, and a new list starts from what it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sandbox.mcp_server.principal import Principal


@dataclass(frozen=True)
class Revocation:
    """Tokens of ``issuer`` for the client and/or the subject, issued at or before ``revoked_at``, are refused."""

    issuer: str
    client_id: str | None
    subject: str | None
    revoked_at: int


class Journal(Protocol):
    def load(self, *, horizon: float) -> list[Revocation]: ...

    def append(self, revocation: Revocation) -> None: ...


class RevocationList:
    def __init__(
        self,
        *,
        max_token_lifetime: int,
        leeway: int,
        clock: Callable[[], float] = time.time,
        journal: Journal | None = None,
    ) -> None:
        self._keep_for = max_token_lifetime + leeway
        self._clock = clock
        self._journal = journal
        self._by_key: dict[tuple[str, str, str], int] = {}  # (issuer, "client"|"subject", id) -> revoked_at
        if journal is not None:
            for revocation in journal.load(horizon=clock() - self._keep_for):
                self._apply(revocation)

    def add(self, revocation: Revocation) -> None:
        if self._journal is not None:
            self._journal.append(revocation)
        self._apply(revocation)
        self._forget_old()

    def _apply(self, revocation: Revocation) -> None:
        keys = []
        if revocation.client_id:
            keys.append((revocation.issuer, "client", revocation.client_id))
        if revocation.subject:
            keys.append((revocation.issuer, "subject", revocation.subject))
        for key in keys:
            self._by_key[key] = max(self._by_key.get(key, revocation.revoked_at), revocation.revoked_at)

    def covers(self, principal: Principal) -> bool:
        """True if a revocation covers this token: same agent, issued at or before the revocation."""
        for key in (
            (principal.issuer, "client", principal.client_id),
            (principal.issuer, "subject", principal.subject),
        ):
            revoked_at = self._by_key.get(key)
            if revoked_at is not None and principal.issued_at <= revoked_at:
                return True
        return False

    def __len__(self) -> int:
        self._forget_old()
        return len(self._by_key)

    def _forget_old(self) -> None:
        horizon = self._clock() - self._keep_for
        for key in [key for key, revoked_at in self._by_key.items() if revoked_at < horizon]:
            del self._by_key[key]
