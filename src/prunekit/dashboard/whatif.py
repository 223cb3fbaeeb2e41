"""What would a one-shot pruning do to this model? Prune a copy and measure it, in seconds.

A *choice* is what the user set on the page: structured (whole units out of the pruning
groups of :func:`prunekit.structured.build_graph`) or unstructured (single weights zeroed), one
amount for every group/layer or one amount per group/layer, and a criterion. :func:`try_choice`
applies it to a deep copy of the variant with the library's own pruners (so the answer is what
a recipe stage with the same settings would give) and measures the copy and the original the
same way: MACs, parameters, non-zeros, size of the compressed file, accuracy and loss on a
held-out batch, and latency timed round-robin against the original.

>>> import torch
>>> from torch import nn
>>> from prunekit.dashboard.subject import Subject
>>> net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
>>> x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
>>> s = Subject("r", "baseline", net, x[:1], (x, y), [], "cross_entropy", Path("."))
>>> result = try_choice(s, parse_choice({"granularity": "structured", "amount": 0.5}))
>>> result["before"]["params"], result["after"]["params"]
(420, 212)
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from prunekit.dashboard.subject import Subject
from prunekit.evaluate import count_macs, count_params, evaluate_accuracy, prunable_sparsity
from prunekit.latency import compare_latency, repeats_for

Granularity = Literal["structured", "unstructured"]
UNSTRUCTURED_CRITERIA = ("magnitude", "random")
"""One-shot unstructured criteria that need no gradients (Taylor needs a training step)."""
DATA_CRITERIA = ("taylor", "activation_mean", "apoz")
LATENCY_BUDGET_MS = 1500.0


@dataclass(frozen=True)
class Choice:
    """One what-if: ``amount`` for all, or ``amounts`` per group index / layer name."""

    granularity: Granularity
    criterion: str
    scope: Literal["layer", "global"] = "layer"
    amount: float | None = None
    amounts: dict[str, float] = field(default_factory=dict)


def _fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def parse_choice(data: Mapping[str, Any]) -> Choice:
    """A :class:`Choice` from the page's JSON, validated (one-line :class:`ValueError`).

    >>> parse_choice({"granularity": "unstructured", "amount": 0.8}).criterion
    'magnitude'
    """
    from prunekit.structured.importance import IMPORTANCE

    granularity = data.get("granularity")
    if granularity not in ("structured", "unstructured"):
        raise ValueError("granularity must be 'structured' or 'unstructured'")
    known = IMPORTANCE if granularity == "structured" else UNSTRUCTURED_CRITERIA
    criterion = data.get("criterion") or ("l2" if granularity == "structured" else "magnitude")
    if criterion not in known:
        raise ValueError(f"criterion {criterion!r} is not one of {sorted(known)}")
    scope = data.get("scope", "layer")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    amount = data.get("amount")
    raw = data.get("amounts") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("amounts must map a group or layer to an amount")  # noqa: TRY004
    amounts = {str(k): _fraction(v, f"amount of {k}") for k, v in raw.items() if v}
    if amount is not None and amounts:
        raise ValueError("give one amount for all (amount) or amounts per group/layer, not both")
    if amount is None and not amounts:
        raise ValueError("set an amount above 0 for at least one group or layer")
    return Choice(granularity, criterion, scope,
                  None if amount is None else _fraction(amount, "amount"), amounts)


def _scoring(subject: Subject, criterion: str) -> list:
    if criterion in DATA_CRITERIA and not subject.train_batches:
        raise ValueError(f"criterion {criterion!r} needs training data and {subject.why_no_data}"
                         "; choose l1 or l2")
    return subject.train_batches


def _prune_structured(subject: Subject, model: nn.Module, choice: Choice) -> dict[str, Any]:
    from prunekit.structured.prune import (
        graph_and_scores,
        plan_removal,
        prune_channels,
        remove_planned,
    )

    data = _scoring(subject, choice.criterion)
    if choice.amount is not None:
        report = prune_channels(model, subject.example, ratio=choice.amount, scope=choice.scope,
                                criterion=choice.criterion, data=data)
    else:
        start = time.perf_counter()
        inputs, graph, scores = graph_and_scores(model, subject.example, choice.criterion,
                                                 data, ())
        remove = np.zeros(graph.num_units, dtype=bool)
        for key, ratio in choice.amounts.items():
            if not key.isdigit() or int(key) >= len(graph.groups):
                raise ValueError(f"no pruning group {key!r}; the model has "
                                 f"{len(graph.groups)} (0–{len(graph.groups) - 1})")
            units = graph.groups[int(key)].units  # the library's own per-layer rule, one group
            remove[units] = plan_removal(graph, scores.scores, ratio, scope="layer")[units]
        report = remove_planned(graph, scores, remove, inputs, max(choice.amounts.values()),
                                start)
    return {"removed_units": report.removed, "units": report.units,
            "groups": [{"modules": list(g.modules), "units": g.units, "removed": g.removed}
                       for g in report.groups]}


def _prune_unstructured(model: nn.Module, choice: Choice) -> dict[str, Any]:
    from prunekit.masks import strip
    from prunekit.unstructured import prune_by_ratio, targets

    names = [weight.name for weight in targets(model)]
    if choice.amount is not None:
        layers = prune_by_ratio(model, choice.amount, scope=choice.scope,
                                criterion=choice.criterion)
    else:
        layers = {}
        for key, ratio in choice.amounts.items():
            chosen = _tensors_of(key, names)  # the page names layers; a tensor name works too
            others = [n for n in names if n not in chosen]
            layers |= prune_by_ratio(model, ratio, scope="layer", criterion=choice.criterion,
                                     ignore=others)
    strip(model)
    return {"layer_sparsity": layers}


def _tensors_of(key: str, names: list[str]) -> list[str]:
    """The prunable tensors ``key`` names: itself, or every one of the layer ``key``."""
    chosen = [key] if key in names else [n for n in names if n.rpartition(".")[0] == key]
    if not chosen:
        layers = sorted({n.rpartition(".")[0] for n in names})
        raise ValueError(f"no prunable layer {key!r}; the layers are {layers}")
    return chosen


def apply_choice(subject: Subject, choice: Choice) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned deep copy of the subject's model, and what the pruner reported."""
    from prunekit.structured import RewriteError

    model = copy.deepcopy(subject.model)
    try:
        if choice.granularity == "structured":
            details = _prune_structured(subject, model, choice)
        else:
            details = _prune_unstructured(model, choice)
    except RewriteError as exc:  # the library rolled the copy back; say why, as bad input
        raise ValueError(str(exc)) from None
    return model.eval(), details


def _size_bytes(model: nn.Module) -> int:
    """Bytes of the model saved as prunekit saves variants (bitmask for sparse tensors)."""
    from prunekit.saving import save

    with tempfile.TemporaryDirectory() as scratch:
        return save(model, Path(scratch) / "m.safetensors", format="bitmask").stat().st_size


def measure_model(subject: Subject, model: nn.Module) -> dict[str, Any]:
    """Everything but latency, measured as the run's table measures it."""
    params, nonzero = count_params(model)
    metrics: dict[str, Any] = {
        "params": params, "nonzero_params": nonzero, "sparsity": prunable_sparsity(model),
        "macs": count_macs(model, subject.example), "file_bytes": _size_bytes(model),
        "accuracy": None, "loss": None,
    }
    if subject.held_out is not None:
        x, y = subject.held_out
        metrics |= evaluate_accuracy(model, x, y, loss=subject.loss)
    return metrics


def try_choice(subject: Subject, choice: Choice) -> dict[str, Any]:
    """Prune a copy by ``choice`` and measure it beside the original (see the module doc)."""
    start = time.perf_counter()
    candidate, details = apply_choice(subject, choice)
    if "before" not in subject.cache:
        subject.cache["before"] = measure_model(subject, subject.model)
    before, after = dict(subject.cache["before"]), measure_model(subject, candidate)
    probe = compare_latency({"before": subject.model}, subject.example, warmup=1, repeats=3,
                            threads=subject.threads)
    repeats = repeats_for(2 * probe["before"].median_ms, budget_ms=LATENCY_BUDGET_MS)
    timed = compare_latency({"before": subject.model, "after": candidate}, subject.example,
                            warmup=3, repeats=repeats, threads=subject.threads)
    for name, metrics in (("before", before), ("after", after)):
        metrics |= {"latency_ms": timed[name].median_ms, "latency_p95_ms": timed[name].p95_ms}
    return {"before": before, "after": after, "details": details,
            "held_out": None if subject.held_out is None else len(subject.held_out[1]),
            "why_no_data": subject.why_no_data, "latency_repeats": repeats,
            "batch_size": len(subject.example), "threads": timed["after"].threads,
            "seconds": time.perf_counter() - start}


SWEEP_AMOUNTS = {"structured": (0.25, 0.5, 0.75, 0.9), "unstructured": (0.5, 0.7, 0.9, 0.95)}


def sensitivity_sweep(subject: Subject, granularity: Granularity) -> list[dict[str, Any]]:
    """Accuracy and loss on the held-out batch with each group (or layer) alone pruned at each
    of :data:`SWEEP_AMOUNTS`: where the model can give and where it cannot, as run-store rows."""
    from prunekit.structured import build_graph
    from prunekit.unstructured import targets

    if subject.held_out is None:
        raise ValueError(f"sensitivity needs held-out data, and {subject.why_no_data}")
    if granularity == "structured":
        graph = build_graph(subject.model, subject.example)
        choices = {str(g.index): "+".join(g.modules) for g in graph.groups}
        criterion = "l2"
    else:
        choices = {weight.name: weight.name for weight in targets(subject.model)}
        criterion = "magnitude"
    points = []
    for key, label in choices.items():
        for amount in SWEEP_AMOUNTS[granularity]:
            model, _ = apply_choice(subject, Choice(granularity, criterion, amounts={key: amount}))
            scores = evaluate_accuracy(model, *subject.held_out, loss=subject.loss)
            points += [{"variant": subject.variant, "target": label, "granularity": granularity,
                        "amount": amount, "metric": metric, "value": scores[metric]}
                       for metric in ("accuracy", "loss") if math.isfinite(scores[metric])]
    return points
