"""Latency, measured so that comparisons stay fair on a busy machine.

Timing model A for a while and then model B compares two different machines whenever other
work shares the cores. Everything here times alternatives *round-robin*, in orders where each
takes every position and follows every other equally often (:mod:`prunekit.balanced_order`),
so each sees the same drift and the same predecessors (what ran just before decides what is
left in the caches), and reports medians, which discard the runs a context switch spoiled. A
table of variants is timed in one such pass, across backends too: eager PyTorch, prunekit's
sparse kernels (:func:`prunekit.sparse.deploy`) and onnxruntime.

Even so, two timings of the *same* model differ, by a few percent on a quiet machine and by
tens on a busy one. :func:`time_until_stable` therefore times a twin of the reference (the same
callable, as one more candidate) and derives a :class:`NoiseBand` from the two: a ratio inside
it is not evidence of a difference, and :func:`describe_ratio` prints it "within noise". Rounds
go on until the band is narrower than asked or the time budget is spent.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.balanced_order import carryover_balanced_orders

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
    first_round: int = 0,
) -> dict[Hashable, list[float]]:
    """Milliseconds of every call of every candidate, round-robin in carry-over balanced
    orders (:func:`~prunekit.balanced_order.carryover_balanced_orders`); ``first_round`` says
    where in that cycle of orders to start, so that successive calls continue it.

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
    orders = carryover_balanced_orders(len(names))
    times: dict[Hashable, list[float]] = {name: [] for name in names}
    for round_index in range(first_round, first_round + repeats):
        for name in (names[i] for i in orders[round_index % len(orders)]):
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
def _timed_runs(
    models: Mapping[Hashable, nn.Module], example_input: Tensor, *, warmup: int, repeats: int,
    threads: int | None, twin_of: Hashable | None = None,
) -> tuple[dict[Hashable, list[float]], int]:
    """Every call's milliseconds per model (and per :data:`TWIN` of ``twin_of``), in eval mode,
    round-robin with an untimed call before each timed one; and the thread count used."""
    modes = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    try:
        with fixed_threads(threads):
            runs = {name: (lambda m=model: m(example_input)) for name, model in models.items()}
            if twin_of is not None:
                runs[TWIN] = runs[twin_of]
            times = interleaved_times(runs, repeats=repeats, warmup=warmup, untimed_per_turn=1)
            used_threads = torch.get_num_threads()
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return times, used_threads


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
    return compare_with_noise(models, example_input, warmup=warmup, repeats=repeats,
                              threads=threads)[0]


def compare_with_noise(
    models: Mapping[Hashable, nn.Module],
    example_input: Tensor,
    *,
    reference: Hashable | None = None,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> tuple[dict[Hashable, Latency], NoiseBand | None]:
    """:func:`compare_latency`, and with a ``reference`` a twin of it timed in the same pass:
    the :class:`NoiseBand` its ratios are read against (None without a reference).

    >>> lat, band = compare_with_noise({"a": nn.Linear(4, 2)}, torch.zeros(1, 4), reference="a",
    ...                                repeats=5)
    >>> sorted(lat), band.rounds
    (['a'], 5)
    """
    times, used = _timed_runs(models, example_input, warmup=warmup, repeats=repeats,
                              threads=threads, twin_of=reference)
    band = None if reference is None else noise_band(times[reference], times.pop(TWIN))
    latencies = {
        name: Latency(statistics.median(v), _p95(v), len(example_input), used, repeats)
        for name, v in times.items()
    }
    return latencies, band


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
    noise_reference: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Report fields for each model, on every backend asked for, all timed in one pass.

    With ``noise_reference`` (the baseline's name), its twin is timed in the same pass and
    every row carries ``noise_band``, the relative width within which a ratio is noise.

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
    timed, band = compare_with_noise(
        candidates, example_input, warmup=warmup, repeats=repeats, threads=threads,
        reference=None if noise_reference is None else (noise_reference, "torch"),
    )
    if band is not None:
        for row in rows.values():
            row["noise_band"] = band.width
    for (name, backend), latency in timed.items():
        if backend == "torch":
            rows[name] |= {"latency_ms": latency.median_ms, "latency_p95_ms": latency.p95_ms,
                           "batch_size": latency.batch_size, "threads": latency.threads}
        else:
            key = "sparse_latency_ms" if backend == "sparse" else "onnx_latency_ms"
            rows[name][key] = latency.median_ms
    return rows


@dataclass(frozen=True)
class NoiseBand:
    """How far apart two timings of one and the same thing come out in this run.

    ``width`` is relative: 0.03 means a ratio between 1/1.03 and 1.03 is within noise. It is
    the ``confidence`` quantile of ``|log(median(a*) / median(b*))|`` over bootstrap resamples
    of the paired rounds of the twin timings ``a`` and ``b``, so it covers the spread the
    observed gap (``twin_ratio``) could have had with this many rounds.
    """

    width: float
    twin_ratio: float
    rounds: int
    confidence: float

    def contains(self, ratio: float) -> bool:
        """True if ``ratio`` (one median over another) is inside the band.

        >>> NoiseBand(0.05, 1.01, 30, 0.95).contains(1.04), NoiseBand(0.05, 1.0, 30, 0.95).contains(0.9)
        (True, False)
        """
        return abs(math.log(ratio)) <= math.log1p(self.width)


def noise_band(
    first: Sequence[float],
    second: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 400,
    seed: int = 0,
) -> NoiseBand:
    """The :class:`NoiseBand` of two equally long series of timings of the same thing.

    Rounds are resampled as pairs (both twins ran in the same round, under the same drift).
    Deterministic for a given ``seed``.

    >>> noise_band([1.0] * 9, [1.0] * 9).width
    0.0
    >>> band = noise_band([1.0, 1.1, 0.9, 1.0, 1.2], [1.1, 1.0, 1.0, 0.9, 1.0])
    >>> 0.0 < band.width < 0.3
    True
    """
    if len(first) != len(second) or len(first) < 2:
        raise ValueError(
            f"noise_band needs two series of equal length >= 2, got {len(first)} and {len(second)}"
        )
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("noise_band needs positive timings")
    picks = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    gaps = np.abs(np.log(np.median(a[picks], axis=1) / np.median(b[picks], axis=1)))
    width = float(np.expm1(np.quantile(gaps, confidence)))
    twin_ratio = float(np.median(a) / np.median(b))
    return NoiseBand(width=width, twin_ratio=twin_ratio, rounds=len(a), confidence=confidence)


def describe_ratio(ratio: float, band: NoiseBand | None) -> str:
    """``ratio`` as ``"1.87x"``, marked ``"(within noise)"`` when the band contains it.

    >>> band = NoiseBand(0.04, 1.0, 40, 0.95)
    >>> describe_ratio(1.02, band), describe_ratio(1.30, band)
    ('1.02x (within noise)', '1.30x')
    """
    text = f"{ratio:.2f}x"
    return f"{text} (within noise)" if band is not None and band.contains(ratio) else text


TWIN = "noise twin"
"""The key under which :func:`time_until_stable` times the reference's twin."""


@dataclass(frozen=True)
class StableTimes:
    """What :func:`time_until_stable` measured: every call's milliseconds per candidate (the
    twin's under :data:`TWIN`), the band, and whether it narrowed below ``max_band`` in time."""

    times: dict[Hashable, list[float]]
    band: NoiseBand
    converged: bool
    seconds: float

    @property
    def medians(self) -> dict[Hashable, float]:
        """Median milliseconds per candidate, the twin left out."""
        return {k: statistics.median(v) for k, v in self.times.items() if k != TWIN}

    def speedup(self, baseline: Hashable, candidate: Hashable) -> float:
        """How many times faster ``candidate`` ran than ``baseline`` (median over median)."""
        medians = self.medians
        return medians[baseline] / medians[candidate]

    def describe(self, baseline: Hashable, candidate: Hashable) -> str:
        """:meth:`speedup` as text, marked "within noise" where the band contains it."""
        return describe_ratio(self.speedup(baseline, candidate), self.band)

    def to_json(self) -> dict:
        """JSON-able data for :meth:`from_json` (candidate names become strings)."""
        return {"times": {str(k): list(v) for k, v in self.times.items()},
                "band": asdict(self.band), "converged": self.converged, "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict) -> StableTimes:
        """The timings :meth:`to_json` gave.

        >>> band = NoiseBand(0.02, 1.01, 5, 0.95)
        >>> times = StableTimes({"a": [1.0, 2.0]}, band, True, 0.5)
        >>> StableTimes.from_json(times.to_json()) == times
        True
        """
        return cls({k: [float(t) for t in v] for k, v in data["times"].items()},
                   NoiseBand(**data["band"]), bool(data["converged"]), float(data["seconds"]))


def time_until_stable(
    candidates: Mapping[Hashable, Callable[[], object]],
    *,
    reference: Hashable | None = None,
    max_band: float = 0.03,
    budget_s: float = 10.0,
    min_rounds: int = 5,
    max_rounds: int = 1000,
    warmup: int = 1,
    untimed_per_turn: int = 0,
    timed_scope: Callable[[Hashable], contextlib.AbstractContextManager[Any]] | None = None,
) -> StableTimes:
    """Time ``candidates`` round-robin, with a twin of ``reference`` (default: the first),
    until the twins' :class:`NoiseBand` is at most ``max_band`` or ``budget_s`` is spent.

    Rounds come in chunks that double in size (so the band is recomputed a logarithmic number
    of times); at least ``min_rounds`` run, at most ``max_rounds``. ``untimed_per_turn``,
    ``warmup`` and ``timed_scope`` are :func:`interleaved_times`' own. The band is the
    reference's: compare other candidates with it, and time the baseline as the reference.

    >>> result = time_until_stable({"a": lambda: sum(range(100)), "b": lambda: None},
    ...                            max_band=1e9, budget_s=1.0)  # any band: stops at min_rounds
    >>> result.converged, sorted(result.medians), result.band.rounds
    (True, ['a', 'b'], 5)
    """
    if not candidates:
        raise ValueError("time_until_stable needs at least one candidate")
    if min_rounds < 2 or max_rounds < min_rounds:
        raise ValueError(f"need 2 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    reference = next(iter(candidates)) if reference is None else reference
    if reference not in candidates or TWIN in candidates:
        raise ValueError(f"reference {reference!r} must be a candidate, and {TWIN!r} must not")
    runs = {**candidates, TWIN: candidates[reference]}
    start = time.perf_counter()
    times: dict[Hashable, list[float]] = {name: [] for name in runs}
    chunk = min_rounds
    while True:
        new = interleaved_times(
            runs, repeats=chunk, warmup=warmup if not times[TWIN] else 0,
            untimed_per_turn=untimed_per_turn, timed_scope=timed_scope,
            first_round=len(times[TWIN]),
        )  # fmt: skip
        for name, values in new.items():
            times[name].extend(values)
        band = noise_band(times[reference], times[TWIN])
        rounds = band.rounds
        if band.width <= max_band:
            converged = True
            break
        elapsed = time.perf_counter() - start
        per_round = elapsed / rounds
        chunk = min(rounds, max_rounds - rounds, int((budget_s - elapsed) / per_round))
        if chunk < 1:
            converged = False
            break
    return StableTimes(times, band, converged, time.perf_counter() - start)
