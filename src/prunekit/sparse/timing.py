"""Fair timing of alternatives on a busy machine: interleaved runs, medians.

Why: when other processes share the cores, timing A for a while and then B for a while
compares two different machines. Running A, B, C, then B, C, A, then C, A, B, ... exposes every
alternative to the same noise and gives each the same predecessors (what ran just before
decides what is left in the caches), and the median of each discards the runs a context switch
spoiled. Deployment decisions and the benchmarks both rest on this.

>>> import torch
>>> medians = interleaved_medians({"small": lambda: torch.ones(10).sum(),
...                                "large": lambda: torch.ones(10**6).sum()}, repeats=5)
>>> medians["small"] < medians["large"]
True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def interleaved_medians(
    candidates: Mapping[str, Callable[[], object]], *, repeats: int = 9, warmup: int = 1
) -> dict[str, float]:
    """Median wall time in milliseconds of each candidate, run in turn ``repeats`` times."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for run in candidates.values():
            run()
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def repeats_for(single_run_ms: float, *, budget_ms: float, low: int = 5, high: int = 25) -> int:
    """How many interleaved rounds fit ``budget_ms`` when one round takes ``single_run_ms``.

    >>> repeats_for(1.0, budget_ms=100.0), repeats_for(100.0, budget_ms=100.0)
    (25, 5)
    """
    if single_run_ms <= 0:
        return high
    return max(low, min(high, int(budget_ms / single_run_ms)))
