"""What a compression must fit: one budget, estimated for a plan and measured on a model.

A budget is a fraction of the dense model's MACs, parameters, file size or measured latency.
The search (:mod:`.search`) needs the cost of thousands of candidate plans, so it *estimates*:
MACs and parameters from the dependency graph's per-layer terms (each layer shrinks by the kept
fraction of its input and output channels; what no rule describes is taken as fixed), file size
as parameters (the file is their fp32 values plus a small header; a layer's matrices shrink
with its inputs and outputs, its biases with its outputs, normalisation layers stay fixed), latency from the measured
per-layer table (:mod:`prunekit.structured.latency_table`). Whether a budget is *met* is then
decided on the pruned model itself: MACs counted, parameters counted, the file written, the
latency timed against the dense model with a noise band (:func:`prunekit.latency.time_until_stable`).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
>>> Budget("params", 0.5).measure(net, torch.zeros(1, 8))
212.0
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from prunekit import distributed
from prunekit.evaluate import count_macs, count_params
from prunekit.latency import StableTimes, fixed_threads, time_until_stable
from prunekit.structured.graph import DependencyGraph
from prunekit.structured.latency_table import LatencyTable

BudgetKind = Literal["macs", "latency", "size", "params"]
BUDGETS: tuple[str, ...] = ("macs", "latency", "size", "params")
LatencyBackend = Literal["torch", "fused"]
"""``torch``: the model as it is, eager; ``fused``: deployed by
:func:`prunekit.structured.fuse_for_cpu` (BatchNorm folded, oneDNN fused, channels-last)."""


@dataclass(frozen=True)
class Budget:
    """``fraction`` of the dense model's ``kind`` (``macs``, ``latency``, ``size``, ``params``)."""

    kind: BudgetKind
    fraction: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGETS:
            raise ValueError(f"unknown budget {self.kind!r}; choose one of {list(BUDGETS)}")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"a --target-{self.kind} budget is a fraction of the dense model's "
                             f"in (0, 1), got {self.fraction}")

    @property
    def option(self) -> str:
        """How the command line spells this budget (``--target-macs 0.25``)."""
        return f"--target-{self.kind} {self.fraction:g}"

    def measure(self, model: nn.Module, example_input: Tensor) -> float:
        """The model's MACs, parameters or file bytes (latency is timed: :func:`time_models`)."""
        if self.kind == "macs":
            return float(count_macs(model, example_input))
        if self.kind == "params":
            return float(count_params(model)[0])
        if self.kind == "size":
            return float(file_bytes(model))
        raise ValueError("latency is timed against the dense model: use time_models")


def file_bytes(model: nn.Module) -> int:
    """Bytes of the model written by :func:`prunekit.save` (weights and architecture)."""
    from prunekit.modes import eval_mode
    from prunekit.saving import save

    with tempfile.TemporaryDirectory() as scratch, eval_mode(model):
        return save(model, Path(scratch) / "m.safetensors").stat().st_size


class PlanCost:
    """The estimated cost of removing units from the dense ``graph``, as a fraction of dense.

    ``kind`` is the budget's; ``measured`` is the dense model's counted MACs (``macs``) or
    parameters (``params``, ``size``), so that what the graph does not describe stays fixed.
    """

    def __init__(self, graph: DependencyGraph, kind: BudgetKind, measured: float,
                 table: LatencyTable | None = None) -> None:
        if kind == "latency" and table is None:
            raise ValueError("a latency budget needs the measured latency table")
        self.graph, self.kind, self.table = graph, kind, table
        self.weights = np.array([_term_weights(graph, t, kind) for t in graph.macs], dtype=float)
        self.timed = [table is not None and t.module in table.layers for t in graph.macs]
        none = np.zeros(graph.num_units, dtype=bool)
        self.fixed = 0.0
        if kind == "latency":
            self.dense = self.absolute(none)
        else:
            self.fixed = max(0.0, measured - self.absolute(none))
            self.dense = float(measured)

    def absolute(self, remove: np.ndarray) -> float:
        """Milliseconds (latency) or MACs / parameters left after removing ``remove``."""
        keep = np.append(~remove, True)  # unit -1 (not prunable) is always kept
        total = 0.0
        for i, term in enumerate(self.graph.macs):
            kept_out = keep[self.graph.unit_of[term.out_ids]]
            kept_in = (None if term.in_ids is None or not len(term.in_ids)
                       else keep[self.graph.unit_of[term.in_ids]])
            if self.kind == "latency":
                if self.timed[i]:
                    total += self.table.layer_ms(term.module,  # type: ignore[union-attr]
                                                 0 if kept_in is None else int(kept_in.sum()),
                                                 int(kept_out.sum()))
                continue
            out_fraction = kept_out.mean()
            fraction = out_fraction * (1.0 if kept_in is None else kept_in.mean())
            total += self.weights[i, 0] * fraction + self.weights[i, 1] * out_fraction
        if self.kind == "latency":
            total += self.table.rest_ms  # type: ignore[union-attr]
        return float(total + self.fixed)

    def __call__(self, remove: np.ndarray) -> float:
        """The estimate as a fraction of the dense model's."""
        return self.absolute(remove) / self.dense if self.dense else 1.0


def _term_weights(graph: DependencyGraph, term: object, kind: BudgetKind) -> tuple[float, float]:
    """What shrinks with a term's kept inputs × outputs, and what with its outputs alone: its
    dense MACs (``macs``), or its layer's matrices and its vectors (biases) for ``params`` and
    ``size`` (counted once per layer, on its first term)."""
    if kind in ("macs", "latency"):
        return float(term.dense_macs), 0.0  # type: ignore[attr-defined]
    first = next(t for t in graph.macs if t.module == term.module)  # type: ignore[attr-defined]
    if first is not term:
        return 0.0, 0.0
    module = graph.model.get_submodule(term.module)  # type: ignore[attr-defined]
    tensors = list(module.parameters(recurse=False))
    return (float(sum(p.numel() for p in tensors if p.dim() > 1)),
            float(sum(p.numel() for p in tensors if p.dim() <= 1)))


def deployed(model: nn.Module, example_input: Tensor, backend: LatencyBackend) -> tuple:
    """(callable model, input) as ``backend`` runs it."""
    from prunekit.structured.deploy import fuse_for_cpu

    model.eval()
    if backend == "torch":
        return model, example_input
    if backend != "fused":
        raise ValueError(f"unknown latency backend {backend!r}; choose 'torch' or 'fused'")
    batch = example_input
    if example_input.dim() == 4:
        batch = example_input.to(memory_format=torch.channels_last)
    return fuse_for_cpu(model, batch), batch


@torch.inference_mode()
def time_models(
    models: dict[str, nn.Module], example_input: Tensor, *, reference: str,
    backend: LatencyBackend = "torch", threads: int | None = None, budget_s: float = 10.0,
    max_band: float = 0.03,
) -> StableTimes:
    """Every model timed round-robin with a twin of ``reference`` (the dense model) until
    the noise band is under ``max_band`` or ``budget_s`` is spent: a
    :class:`~prunekit.latency.StableTimes`.

    Under torchrun, rank 0 alone times and every rank returns its timings (all ranks call
    this together): a latency budget decides which step the search keeps, and ranks timing
    on cores they share would decide differently, then fine-tune models DDP cannot pair."""

    def measure() -> StableTimes:
        with fixed_threads(threads):
            runs = {}
            for name, model in models.items():
                callable_model, batch = deployed(model, example_input, backend)
                runs[name] = lambda m=callable_model, b=batch: m(b)
            return time_until_stable(runs, reference=reference, budget_s=budget_s,
                                     max_band=max_band, untimed_per_turn=1)

    return distributed.measured_on_writer(measure, StableTimes.to_json, StableTimes.from_json)
