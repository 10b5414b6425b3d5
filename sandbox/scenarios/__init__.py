"""Reproducible lifecycle scenarios: a YAML format, a step library, a runner, and reports."""

from __future__ import annotations

from sandbox.scenarios.loader import load_scenario, scenario_files
from sandbox.scenarios.model import Scenario
from sandbox.scenarios.results import ScenarioResult
from sandbox.scenarios.runner import run_scenario, run_scenarios

__all__ = [
    "Scenario",
    "ScenarioResult",
    "load_scenario",
    "run_scenario",
    "run_scenarios",
    "scenario_files",
]
