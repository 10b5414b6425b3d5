"""Why a request's token was refused: the two outcomes the HTTP layer turns into 401 and 503."""

from __future__ import annotations


class InvalidToken(Exception):
    """The token is not acceptable here (garbage, expired, wrong audience, untrusted issuer, revoked ...): 401."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


class VerificationUnavailable(Exception):
    """The token cannot be checked right now (keys or introspection unreachable): 503, never let through."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)
