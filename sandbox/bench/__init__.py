"""Benchmarks on the running stack: repeatable measurements, printed as JSON, compared side by side in one run."""

from __future__ import annotations

from sandbox.bench.registry import BENCHMARKS, benchmark
from sandbox.bench.runner import run_benchmarks

__all__ = [
    "BENCHMARKS",
    "benchmark",
    "run_benchmarks",
]
