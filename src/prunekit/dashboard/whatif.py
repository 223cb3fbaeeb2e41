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
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from prunekit.dashboard.subject import Subject
from prunekit.evaluate import count_macs, count_params, evaluate_accuracy, prunable_sparsity
from prunekit.latency import compare_latency, repeats_for
from prunekit.sensitivity import measure_sensitivity, prune_amounts

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
    from prunekit.structured.prune import prune_channels

    data = _scoring(subject, choice.criterion)
    if choice.amounts:
        return prune_amounts(model, subject.example, "structured", choice.amounts,
                             criterion=choice.criterion, data=data)
    report = prune_channels(model, subject.example, ratio=choice.amount, scope=choice.scope,
                            criterion=choice.criterion, data=data)
    return {"removed_units": report.removed, "units": report.units,
            "groups": [{"modules": list(g.modules), "units": g.units, "removed": g.removed}
                       for g in report.groups]}


def _prune_unstructured(model: nn.Module, choice: Choice) -> dict[str, Any]:
    from prunekit.masks import strip
    from prunekit.unstructured import prune_by_ratio

    if choice.amounts:
        return prune_amounts(model, None, "unstructured", choice.amounts,
                             criterion=choice.criterion)
    layers = prune_by_ratio(model, choice.amount, scope=choice.scope, criterion=choice.criterion)
    strip(model)
    return {"layer_sparsity": layers}


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


def sensitivity_sweep(subject: Subject, granularity: Granularity) -> list[dict[str, Any]]:
    """Accuracy and loss on the held-out batch with each group (or layer) alone pruned at each
    amount of :data:`prunekit.sensitivity.AMOUNTS`, as run-store rows: the library's
    :func:`~prunekit.sensitivity.measure_sensitivity`, on this variant."""
    if subject.held_out is None:
        raise ValueError(f"sensitivity needs held-out data, and {subject.why_no_data}")
    result = measure_sensitivity(subject.model, subject.example, subject.held_out,
                                 granularity=granularity, loss=subject.loss, progress=False)
    return result.rows(subject.variant)
