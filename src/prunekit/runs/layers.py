"""Where a model's cost is, layer by layer: parameters, zeros, channels kept, MACs and time.

A report's totals say *how much* a variant saved; pruning decisions need *where*: which layer
holds the MACs, which one the measured time (on a CPU the two differ: a 1×1 conv or the first
conv on 3 channels runs far below the peak rate), and how many channels each layer kept of the
model it started from. :func:`layer_table` gives the deterministic part (counted, the same on
every machine); :func:`layer_latency` the measured part (per-layer time taken with forward
hooks inside the real forward pass, so each layer runs with the caches the previous ones left).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
>>> rows = layer_table(net, torch.zeros(2, 8))
>>> [(r["layer"], r["out_channels"], r["macs"]) for r in rows]
[('0', 16, 256), ('2', 4, 128)]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.latency import fixed_threads
from prunekit.modes import eval_mode

Row = dict[str, Any]

_WIDTHS: tuple[tuple[str, str | None], ...] = (
    ("out_channels", "in_channels"),
    ("out_features", "in_features"),
    ("hidden_size", "input_size"),
    ("embed_dim", "embed_dim"),
    ("embedding_dim", None),
    ("num_features", None),
    ("normalized_shape", None),
)
"""Attribute pairs that give a layer's (output, input) width, first match wins."""


def _width(module: nn.Module, attribute: str | None) -> int | None:
    value = getattr(module, attribute, None) if attribute else None
    if isinstance(value, (tuple, list)):
        value = value[-1] if value else None
    return int(value) if isinstance(value, int) else None


def layer_widths(module: nn.Module) -> tuple[int | None, int | None]:
    """(output, input) width of a layer: channels, features, hidden units (None if unknown).

    >>> layer_widths(nn.Conv2d(3, 8, 3)), layer_widths(nn.LSTM(4, 6))
    ((8, 3), (6, 4))
    """
    for out_name, in_name in _WIDTHS:
        out = _width(module, out_name)
        if out is not None:
            return out, _width(module, in_name)
    return None, None


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that hold parameters of their own (Conv, Linear, norms, LSTM, attention…)."""
    return [(name, m) for name, m in model.named_modules()
            if name and next(m.parameters(recurse=False), None) is not None]


def exclusive(values: Mapping[str, float], names: list[str]) -> dict[str, float]:
    """Each layer's value without that of the weighted layers inside it (attention holds its
    output projection), so that per-layer MACs and times add up to the whole, never twice.

    >>> exclusive({"attn": 10.0, "attn.out_proj": 4.0}, ["attn", "attn.out_proj"])
    {'attn': 6.0, 'attn.out_proj': 4.0}
    """
    known = set(names)
    own = {name: float(values.get(name, 0.0)) for name in names}
    for name in names:
        parent = name
        while "." in parent:
            parent = parent.rpartition(".")[0]
            if parent in known:
                own[parent] -= float(values.get(name, 0.0))
                break
    return own


@torch.no_grad()
def layer_macs(model: nn.Module, example_input: Tensor) -> dict[str, int]:
    """Multiply-accumulates of each module's own ops in one forward pass (flop counter ÷ 2)."""
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(example_input)
    macs = {}
    for key, ops in counter.get_flop_counts().items():
        _, _, name = key.partition(".")  # keys are "<RootClass>.<module path>"
        if name:
            macs[name] = sum(int(v) for v in ops.values()) // 2
    return macs


def layer_table(
    model: nn.Module, example_input: Tensor, *, reference: nn.Module | None = None
) -> list[Row]:
    """Per weighted layer: kind, parameters, non-zeros, sparsity, widths now and in
    ``reference`` (the model it was pruned from; itself if None), MACs and share of MACs.

    A layer that is not in ``reference`` (renamed, or added) has no original widths (None).
    """
    layers = weighted_layers(model)
    macs = exclusive(layer_macs(model, example_input), [name for name, _ in layers])
    total_macs = sum(macs.values())
    originals = dict((reference or model).named_modules())
    rows = []
    for name, module in layers:
        params = [p.detach() for p in module.parameters(recurse=False)]
        count = sum(p.numel() for p in params)
        nonzero = sum(int(torch.count_nonzero(p)) for p in params)
        weight = getattr(module, "weight", None)
        zeros_of = weight.detach() if isinstance(weight, Tensor) else None
        sparsity = (1.0 - int(torch.count_nonzero(zeros_of)) / zeros_of.numel()
                    if zeros_of is not None and zeros_of.numel() else 1.0 - nonzero / max(1, count))
        out_width, in_width = layer_widths(module)
        original = originals.get(name)
        original_out, original_in = layer_widths(original) if original is not None else (None, None)
        own_macs = int(macs[name])
        rows.append({
            "layer": name, "kind": type(module).__name__, "params": count,
            "nonzero_params": nonzero, "sparsity": sparsity,
            "out_channels": out_width, "original_out_channels": original_out,
            "in_channels": in_width, "original_in_channels": original_in,
            "macs": own_macs, "macs_share": own_macs / total_macs if total_macs else 0.0,
        })
    return rows


@torch.inference_mode()
def layer_latency(
    model: nn.Module, example_input: Tensor, *, repeats: int = 20, warmup: int = 3,
    threads: int | None = None,
) -> dict[str, Row]:
    """Median milliseconds of each weighted layer inside the forward pass, and its share of
    the whole pass (timed in the same runs); what is not in any layer (pooling, reshapes,
    Python) is the remainder of the shares.

    >>> times = layer_latency(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), torch.zeros(1, 8),
    ...                       repeats=3)
    >>> sorted(times["0"])
    ['latency_ms', 'latency_share']
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    layers = weighted_layers(model)
    spent: dict[str, float] = {}
    started: dict[str, float] = {}

    def before(name: str) -> Any:
        return lambda *_: started.__setitem__(name, time.perf_counter())

    def after(name: str) -> Any:
        return lambda *_: spent.__setitem__(
            name, spent.get(name, 0.0) + time.perf_counter() - started[name])

    handles = []
    for name, module in layers:
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after(name)))
    samples: dict[str, list[float]] = {name: [] for name, _ in layers}
    totals: list[float] = []
    try:
        with eval_mode(model), fixed_threads(threads):
            for index in range(warmup + repeats):
                spent.clear()
                start = time.perf_counter()
                model(example_input)
                total = time.perf_counter() - start
                if index >= warmup:
                    totals.append(total)
                    for name, value in exclusive(spent, list(samples)).items():
                        samples[name].append(value)
    finally:
        for handle in handles:
            handle.remove()
    whole = statistics.median(totals)
    return {name: {"latency_ms": 1e3 * statistics.median(values),
                   "latency_share": statistics.median(values) / whole if whole else 0.0}
            for name, values in samples.items()}


def layer_profiles(
    models: Mapping[str, nn.Module], example_input: Tensor, *, reference: str | None = None,
    repeats: int = 20, threads: int | None = None,
) -> dict[str, list[Row]]:
    """:func:`layer_table` merged with :func:`layer_latency` for each named model, widths
    compared with ``models[reference]`` (the baseline); what a run store's ``layers`` hold."""
    base = models[reference] if reference is not None else None
    profiles = {}
    for name, model in models.items():
        times = layer_latency(model, example_input, repeats=repeats, threads=threads)
        profiles[name] = [{**row, **times.get(row["layer"], {})}
                          for row in layer_table(model, example_input, reference=base)]
    return profiles


def without_timing(layer: Row) -> Row:
    """A layer's counted fields only (the same on every machine and every run), for reports
    whose rows must not change when nothing but the timer's noise did."""
    return {k: v for k, v in layer.items() if k not in ("latency_ms", "latency_share")}
