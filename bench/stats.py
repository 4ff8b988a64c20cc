"""The statistics every benchmark reports: percentiles of one run, the median across runs, and
the ratio to the baseline measured in the same run."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ratio(figure: float, baseline: float) -> float:
    """figure / baseline; NaN when the baseline is missing or zero, so a table never divides by 0."""
    if baseline is None or figure is None or baseline == 0 or math.isnan(baseline) or math.isnan(figure):
        return math.nan
    return figure / baseline


def latency_summary(samples_s: Sequence[float], points: Sequence[float] = (50, 99)) -> dict[str, float]:
    """Latency percentiles in milliseconds, keyed p50, p99, p99.9."""
    return {f"p{p:g}": percentile(samples_s, p) * 1000 for p in points}


def median_of_runs(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the median across runs: machines are noisy, a single run is an anecdote."""
    keys = runs[0].keys() if runs else ()
    return {k: median([r[k] for r in runs if not math.isnan(r[k])]) for k in keys}
