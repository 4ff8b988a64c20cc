"""The benchmarks' statistics: percentiles, the median across runs, ratios, Kafka tool parsing."""

import math

import pytest

from bench.kafka_tools import parse_end_to_end, parse_producer_performance
from bench.stats import latency_summary, median, median_of_runs, percentile, ratio


def test_percentile_interpolates_between_closest_ranks():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([5.0, 1.0, 3.0], 50) == 3  # unsorted input
    assert math.isnan(percentile([], 50))


def test_median_and_ratio():
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
    assert ratio(50, 100) == 0.5
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(1, math.nan))


def test_latency_summary_is_in_milliseconds():
    s = latency_summary([0.001] * 99 + [0.100], (50, 99, 99.9))
    assert s["p50"] == pytest.approx(1.0)
    assert s["p99"] == pytest.approx(1.0 + 99 * 0.01)  # 1% of the way from 1 ms to 100 ms
    assert 1.0 < s["p99.9"] <= 100.0


def test_median_of_runs_is_per_key_and_skips_missing():
    runs = [{"p50": 1.0, "p99": 9.0}, {"p50": 3.0, "p99": math.nan}, {"p50": 2.0, "p99": 7.0}]
    assert median_of_runs(runs) == {"p50": 2.0, "p99": 8.0}


def test_kafka_tool_output_is_parsed():
    perf = (
        "300 records sent, 20.0 records/sec (0.04 MB/sec), 3.21 ms avg latency, 45.00 ms max latency, "
        "2 ms 50th, 5 ms 95th, 12 ms 99th, 45 ms 99.9th."
    )
    assert parse_producer_performance(perf) == {"rate": 20.0, "p50": 2.0, "p99": 12.0, "p99.9": 45.0}
    e2e = "Avg latency: 1.2345 ms\nPercentiles: 50th = 1, 99th = 4, 99.9th = 9\n"
    assert parse_end_to_end(e2e) == {"p50": 1.0, "p99": 4.0, "p99.9": 9.0}
