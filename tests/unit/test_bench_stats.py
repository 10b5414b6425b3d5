import pytest

from sandbox.bench.runner import _rows
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
