import asyncio

import pytest

from sandbox.bench.pacing import bounded
from sandbox.bench.registry import target
from sandbox.bench.runner import Target, _rows, _sharing, targets
from sandbox.bench.stats import percentile, ratio, split, summarize


def test_summary_of_a_known_distribution() -> None:
    summary = summarize([float(n) for n in range(1, 101)])
    assert summary == {"median": 50.5, "p95": 95.0, "p99": 99.0, "min": 1.0, "max": 100.0, "n": 100, "unit": "ms"}


def test_an_empty_sample_set_is_an_error_not_zeros() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile([1, 2, 3, 4], 0.99) == 4


def test_split_adds_up() -> None:
    assert split(100, 8) == [13, 13, 13, 13, 12, 12, 12, 12]
    assert sum(split(7, 3)) == 7


def test_ratio() -> None:
    assert ratio(11, 10) == 1.1


def test_markdown_rows_flatten_nested_figures_and_summaries() -> None:
    rows = _rows("", {"a": {"b": 1, "lat": summarize([1.0, 2.0])}, "c": [1, 2]})
    assert rows[0] == ("a.b", "1")
    assert rows[1][0] == "a.lat" and rows[1][1].startswith("median 1.5")
    assert rows[2] == ("c", "1, 2")


def test_targets_are_found_wherever_they_are_with_what_was_measured() -> None:
    report = {
        "results": {
            "a": {"target": "x < 1", "measured": "x 2", "target_met": False, "title": "A"},
            "b": {"modes": {"m": {"target": "y < 3", "measured": "y 1", "target_met": True}}, "n": 1},
        }
    }
    assert targets(report) == [
        Target("a", "-", "x < 1", "x 2", False, ""),
        Target("b", "modes.m", "y < 3", "y 1", True, ""),
    ]


def test_a_missed_target_says_why_and_a_met_one_does_not() -> None:
    assert target("t", "m", False, "because")["why_missed"] == "because"
    assert "why_missed" not in target("t", "m", True, "because")


def test_bounded_runs_at_most_so_many_at_once_and_none_after_the_deadline() -> None:
    running, most = 0, 0

    async def job() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 1

    assert len(asyncio.run(bounded((lambda: job() for _ in range(10)), concurrency=3))) == 10
    assert most == 3
    assert asyncio.run(bounded((lambda: job() for _ in range(10)), concurrency=3, deadline=0.0)) == []


def test_results_say_whether_other_work_shared_the_machine() -> None:
    shared = _sharing({"cores": 2, "load_average_at_start": [0.5, 3.1, 1.0], "load_average_at_end": [1.0, 1.0, 1.0]})
    idle = _sharing({"cores": 2, "load_average_at_start": [0.5, 1.1, 1.0], "load_average_at_end": [1.0, 1.0, 1.9]})
    assert "shared with other work" in shared
    assert "otherwise idle" in idle
