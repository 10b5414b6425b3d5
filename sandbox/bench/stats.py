"""Summaries of measured samples: the same six figures for every distribution."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[float], unit: str = "ms") -> dict[str, float | int | str]:
    """``{median, p95, p99, min, max, n, unit}``; an empty sample set is an error, not zeros."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples to summarize")
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "median": round(median, 3),
        "p95": round(percentile(ordered, 0.95), 3),
        "p99": round(percentile(ordered, 0.99), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
        "unit": unit,
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else math.inf


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal shares that add up exactly."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
