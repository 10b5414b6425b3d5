"""The step library: every step a scenario may use, with its arguments model and what it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from sandbox.idp.capabilities import BY_IDP, CapabilityName

if TYPE_CHECKING:
    from sandbox.scenarios.context import RunContext

A = TypeVar("A", bound=BaseModel)
StepFunction = Callable[["RunContext", Any], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class StepDefinition:
    name: str
    arguments: type[BaseModel]
    run: StepFunction
    shorthand: str | None  # `provision: analyst` means `provision: {agent: analyst}`

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip()


LIBRARY: dict[str, StepDefinition] = {}


def step(name: str, arguments: type[A], *, shorthand: str | None = None) -> Callable[[StepFunction], StepFunction]:
    """Register ``function`` as the step ``name``; it returns evidence for the report, or raises StepFailed."""

    def register(function: StepFunction) -> StepFunction:
        if name in LIBRARY:
            raise ValueError(f"step {name!r} is defined twice")
        LIBRARY[name] = StepDefinition(name, arguments, function, shorthand)
        return function

    return register


class StepFailed(AssertionError):
    """A step's expectation did not hold: what was expected, what happened, and the evidence."""

    def __init__(self, expected: str, actual: str, evidence: dict[str, Any] | None = None) -> None:
        self.expected = expected
        self.actual = actual
        self.evidence = evidence or {}
        super().__init__(f"expected {expected}, got {actual}")


def require_for_servers(context: RunContext, servers: dict[str, str]) -> None:
    """A step on a server that validates by introspection needs the IdP's RFC 7662 endpoint."""
    if "introspect" in servers:
        require(context, "introspection")


class StepNotSupported(Exception):
    """The step needs what the run's IdP lacks: ``not supported by <idp>: <reason>``. Never a pass."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def require(context: RunContext, capability: CapabilityName) -> None:
    """Note that the step needs ``capability`` (its outcome proves it, or its absence, on the run's IdP); stop the
    step, as not supported, when the agents' IdP of this run lacks it."""
    if capability not in context.exercised:
        context.exercised.append(capability)
    reason = BY_IDP[context.idp].unsupported_reason(capability)
    if reason is not None:
        raise StepNotSupported(reason)
