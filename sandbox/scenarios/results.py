"""What a scenario run produced: an outcome per step, with evidence and, for load steps, a time series."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.scenarios.model import Scenario, Step

#: "not supported": the step needs a capability the run's IdP lacks; the scenario is then neither passed nor
#: failed, and the steps after it are not run.
Outcome = Literal["passed", "failed", "error", "not supported", "not run"]


@dataclass
class LoadSample:
    at: float  # seconds since the load began
    ok: bool
    status: str


@dataclass
class LoadSeries:
    """Every call a load step made, and the moments that matter (rotation, revocation) on the same clock."""

    label: str
    samples: list[LoadSample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(not sample.ok for sample in self.samples)


@dataclass
class StepResult:
    step: Step
    outcome: Outcome
    duration: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None
    actual: str | None = None
    message: str | None = None
    capabilities: list[str] = field(default_factory=list)  # what the step needed of the IdP (its outcome proves it)

    def describe(self) -> str:
        """One line: the step, and for a failure the expected and the actual outcome."""
        text = f"{self.step.label()} at line {self.step.line}: {self.outcome}"
        if self.outcome == "failed":
            text += f": expected {self.expected}, got {self.actual}"
        elif self.outcome in ("error", "not supported"):
            text += f": {self.message}"
        return text


@dataclass
class ScenarioResult:
    scenario: Scenario
    tenant: str
    steps: list[StepResult] = field(default_factory=list)
    duration: float = 0.0
    load: list[LoadSeries] = field(default_factory=list)
    setup_error: str | None = None

    @property
    def passed(self) -> bool:
        return self.setup_error is None and all(result.outcome == "passed" for result in self.steps)

    @property
    def first_problem(self) -> StepResult | None:
        return next((result for result in self.steps if result.outcome in ("failed", "error")), None)

    @property
    def not_supported(self) -> StepResult | None:
        """The step the IdP could not do, when that (and no failure before it) ended the scenario."""
        if self.setup_error or self.first_problem is not None:
            return None
        return next((result for result in self.steps if result.outcome == "not supported"), None)

    def summary(self) -> str:
        if self.setup_error:
            return f"{self.scenario.name}: could not set up: {self.setup_error}"
        missing = self.not_supported
        if missing is not None:
            return f"{self.scenario.name}: {missing.message} ({missing.step.label()} at line {missing.step.line})"
        problem = self.first_problem
        if problem is None:
            return f"{self.scenario.name}: passed ({len(self.steps)} steps, {self.duration:.1f}s)"
        return f"{self.scenario.name} ({self.scenario.path}): {problem.describe()}"
