"""Benchmarks register here by name; the runner runs the ones asked for, in registration order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.config import Settings


@dataclass
class BenchContext:
    settings: Settings
    quick: bool
    #: Raw samples a benchmark keeps for plotting: name -> samples (ms).
    distributions: dict[str, list[float]] = field(default_factory=dict)
    #: Figures against a tenant's agent count, for a log-axis plot: name -> [(agents, value)].
    growth: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


BenchFunction = Callable[[BenchContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    run: BenchFunction


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, title: str) -> Callable[[BenchFunction], BenchFunction]:
    def register(function: BenchFunction) -> BenchFunction:
        BENCHMARKS[name] = Benchmark(name, title, function)
        return function

    return register


def target(text: str, measured: str, met: bool, why: str) -> dict[str, Any]:
    """A target beside the figures it judges; when missed, ``why_missed`` says what the figures show about why."""
    return {"target": text, "measured": measured, "target_met": met, **({} if met else {"why_missed": why})}
