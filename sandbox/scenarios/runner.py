"""Run a scenario: fresh tenants, each step in order with its evidence, then a clean removal."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import tempfile
import time

from sandbox.config import DEFAULT_IDP, IdpName, Settings
from sandbox.scenarios.context import RunContext
from sandbox.scenarios.library import LIBRARY, StepFailed, StepNotSupported
from sandbox.scenarios.model import Scenario
from sandbox.scenarios.results import ScenarioResult, StepResult


def one_line(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup):  # say what went wrong, not that a task group held it
        error = error.exceptions[0]
    return re.sub(r"\s+", " ", f"{type(error).__name__}: {error}").strip()[:500]


async def run_scenario(settings: Settings, scenario: Scenario, idp: IdpName = DEFAULT_IDP) -> ScenarioResult:
    """Every step runs until the first that fails; the rest are reported as not run. Teardown always runs.
    The scenario's tenants keep their agents on ``idp`` (their people are on Keycloak either way)."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="scenario"))
    result = ScenarioResult(scenario, tenant="")
    began = time.monotonic()
    context = RunContext(settings, scenario.header, scenario.name[:24], idp)
    with tempfile.TemporaryDirectory(prefix=f"scenario-{scenario.name[:24]}-") as workdir:
        context.remember("scenario_dir", str(scenario.path.parent))
        context.remember("workdir", workdir)
        try:
            await context.setup()
            result.tenant = ", ".join(tenant.name for tenant in context.tenants.values())
            await _run_steps(context, scenario, result)
        except Exception as error:  # setup failed: nothing ran
            result.setup_error = one_line(error)
        finally:
            problems = await context.teardown()
            if problems and result.setup_error is None:
                result.setup_error = "teardown: " + "; ".join(problems)
    result.load = context.load
    result.duration = time.monotonic() - began
    return result


async def _run_steps(context: RunContext, scenario: Scenario, result: ScenarioResult) -> None:
    stopped = False
    for step in scenario.steps:
        if stopped:
            result.steps.append(StepResult(step, "not run"))
            continue
        began = time.monotonic()
        context.exercised = []
        try:
            evidence = await LIBRARY[step.name].run(context, step.arguments) or {}
        except StepFailed as failed:
            outcome = StepResult(
                step, "failed", expected=failed.expected, actual=failed.actual, evidence=failed.evidence
            )
        except StepNotSupported as missing:
            outcome = StepResult(step, "not supported", message=missing.reason)
        except Exception as error:
            outcome = StepResult(step, "error", message=one_line(error))
        else:
            outcome = StepResult(step, "passed", evidence=evidence)
        outcome.duration = time.monotonic() - began
        outcome.capabilities = list(context.exercised)
        result.steps.append(outcome)
        stopped = outcome.outcome != "passed"


def run_scenarios(settings: Settings, scenarios: list[Scenario], idp: IdpName = DEFAULT_IDP) -> list[ScenarioResult]:
    """Run scenarios one after another (pytest-xdist runs them in parallel, each in its own tenants)."""
    return [asyncio.run(run_scenario(settings, scenario, idp)) for scenario in scenarios]
