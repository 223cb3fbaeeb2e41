"""Latency, measured so that comparisons stay fair on a busy machine.

Timing model A for a while and then model B compares two different machines whenever other
work shares the cores. Everything here times alternatives *round-robin* — A, B, C, then B, C, A,
then C, A, B … — so each sees the same drift and the same predecessors (what ran just before
decides what is left in the caches), and reports medians, which discard the runs a context
switch spoiled. A table of variants is timed in one such pass, across backends too: eager
PyTorch, prunekit's sparse kernels (:func:`prunekit.sparse.deploy`) and onnxruntime.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

BACKENDS = ("torch", "sparse", "onnxruntime")
"""Where a model can be timed: eager PyTorch, prunekit's sparse kernels, onnxruntime."""


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass, from repeated runs after a warm-up."""

    median_ms: float
    p95_ms: float
    batch_size: int
    threads: int
    repeats: int


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads (None: as they are), then restore them."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def interleaved_times(
    candidates: Mapping[Hashable, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    untimed_per_turn: int = 0,
    timed_scope: Callable[[Hashable], contextlib.AbstractContextManager[Any]] | None = None,
) -> dict[Hashable, list[float]]:
    """Milliseconds of every call of every candidate, run in rotating round-robin order.

    ``untimed_per_turn`` calls precede each timed one, so that a candidate is timed with its
    weights back in cache, as a model serving requests would be, rather than cold after the
    others evicted it. ``timed_scope(name)``, if given, is entered around each timed call
    (outside the timer), for instruments that should see only those calls.

    >>> times = interleaved_times({"a": lambda: None, "b": lambda: None}, repeats=4)
    >>> [len(v) for v in times.values()]
    [4, 4]
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for run in candidates.values():
            run()
    names = list(candidates)
    times: dict[Hashable, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(untimed_per_turn):
                candidates[name]()
            with timed_scope(name) if timed_scope else contextlib.nullcontext():
                start = time.perf_counter()
                candidates[name]()
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def interleaved_medians(
    candidates: Mapping[Hashable, Callable[[], object]],
    *,
    repeats: int = 9,
    warmup: int = 1,
    untimed_per_turn: int = 0,
) -> dict[Hashable, float]:
    """Median milliseconds per call of each candidate, timed round-robin (see
    :func:`interleaved_times` for ``untimed_per_turn``).

    >>> medians = interleaved_medians({"small": lambda: torch.ones(10).sum(),
    ...                                "large": lambda: torch.ones(10**6).sum()}, repeats=5)
    >>> medians["small"] < medians["large"]
    True
    """
    times = interleaved_times(
        candidates, repeats=repeats, warmup=warmup, untimed_per_turn=untimed_per_turn
    )
    return {name: statistics.median(values) for name, values in times.items()}


def repeats_for(single_run_ms: float, *, budget_ms: float, low: int = 5, high: int = 25) -> int:
    """How many interleaved rounds fit ``budget_ms`` when one round takes ``single_run_ms``.

    >>> repeats_for(1.0, budget_ms=100.0), repeats_for(100.0, budget_ms=100.0)
    (25, 5)
    """
    if single_run_ms <= 0:
        return high
    return max(low, min(high, int(budget_ms / single_run_ms)))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@torch.inference_mode()
def compare_latency(
    models: Mapping[Hashable, nn.Module],
    example_input: Tensor,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> dict[Hashable, Latency]:
    """Latency of each model on ``example_input``, in eval mode, timed round-robin (each timed
    run follows an untimed one of the same model, so caches hold that model's weights).

    >>> lat = compare_latency({"a": nn.Linear(4, 2), "b": nn.Linear(4, 8)}, torch.zeros(1, 4),
    ...                       repeats=5)
    >>> sorted(lat), lat["a"].batch_size
    (['a', 'b'], 1)
    """
    modes = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    try:
        with fixed_threads(threads):
            runs = {name: (lambda m=model: m(example_input)) for name, model in models.items()}
            times = interleaved_times(runs, repeats=repeats, warmup=warmup, untimed_per_turn=1)
            used_threads = torch.get_num_threads()
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return {
        name: Latency(statistics.median(v), _p95(v), len(example_input), used_threads, repeats)
        for name, v in times.items()
    }


def measure_latency(
    model: nn.Module,
    example_input: Tensor,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> Latency:
    """Latency of one model: warm-up, then the median and 95th percentile of ``repeats`` runs.

    >>> lat = measure_latency(nn.Linear(4, 2), torch.zeros(1, 4), repeats=5)
    >>> lat.median_ms > 0 and lat.batch_size == 1
    True
    """
    return compare_latency(
        {"model": model}, example_input, warmup=warmup, repeats=repeats, threads=threads
    )["model"]


def latency_table(
    models: Mapping[str, nn.Module],
    example_input: Tensor,
    *,
    backends: tuple[str, ...] = ("torch",),
    onnx_files: Mapping[str, Path] | None = None,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Report fields for each model, on every backend asked for, all timed in one pass.

    Eager PyTorch gives ``latency_ms``/``latency_p95_ms``; ``"sparse"`` deploys each model onto
    prunekit's sparse kernels where they measure faster (``sparse_layers``, and
    ``sparse_latency_ms`` when at least one layer runs sparse); ``"onnxruntime"`` runs ``onnx_files[name]`` (``onnx_latency_ms``).

    >>> rows = latency_table({"a": nn.Linear(4, 2)}, torch.zeros(1, 4), repeats=3)
    >>> sorted(rows["a"])
    ['batch_size', 'latency_ms', 'latency_p95_ms', 'threads']
    """
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown latency backends {sorted(unknown)}; choose from {BACKENDS}")
    rows: dict[str, dict[str, Any]] = {name: {} for name in models}
    candidates: dict[tuple[str, str], nn.Module] = {}
    for name, model in models.items():
        candidates[name, "torch"] = model
        if "sparse" in backends:
            from prunekit.sparse import deploy

            with fixed_threads(threads):
                deployed, decisions = deploy(model, example_input)
            rows[name]["sparse_layers"] = sum(d.deployed for d in decisions)
            if rows[name]["sparse_layers"]:  # else it is the dense model: timing it again
                candidates[name, "sparse"] = deployed  # would only show the timer's noise
        if "onnxruntime" in backends:
            from prunekit.export.onnx import OnnxRuntimeModule

            if onnx_files is None or name not in onnx_files:
                raise ValueError(f"backend 'onnxruntime' needs an ONNX file for {name!r}")
            candidates[name, "onnxruntime"] = OnnxRuntimeModule(onnx_files[name], threads=threads)
    timed = compare_latency(
        candidates, example_input, warmup=warmup, repeats=repeats, threads=threads
    )
    for (name, backend), latency in timed.items():
        if backend == "torch":
            rows[name] |= {"latency_ms": latency.median_ms, "latency_p95_ms": latency.p95_ms,
                           "batch_size": latency.batch_size, "threads": latency.threads}
        else:
            key = "sparse_latency_ms" if backend == "sparse" else "onnx_latency_ms"
            rows[name][key] = latency.median_ms
    return rows
