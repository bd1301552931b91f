"""Reading pytest-benchmark's timings, also when it runs with --benchmark-disable
(each benchmark then runs once, as a correctness check, and has no statistics)."""

import math


def seconds(benchmark, stat: str = "median") -> float:
    stats = getattr(benchmark, "stats", None)
    return getattr(stats.stats, stat) if stats is not None else math.nan
