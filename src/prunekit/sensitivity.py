"""Sensitivity: how much each layer (or pruning group) can give before the model notices.

Why: layers differ by orders of magnitude in what they tolerate. A ResNet's first conv and its
residual channels collapse at a quarter removed while a wide middle conv loses half for free, so
one ratio for all wastes the budget where it hurts and under-spends where it does not. Pruning
each target *alone*, one-shot, at a grid of amounts, and scoring the task's metrics on a
held-out set gives one curve per target: the map a budget search (:mod:`prunekit.compress`)
spends from, and the curves the dashboard draws.

- *structured* targets are the pruning groups of :func:`prunekit.structured.build_graph` (units
  removed physically, by the structured criterion, ``l2`` by default); *unstructured* targets
  are the prunable weight tensors (weights zeroed, ``magnitude`` by default);
- each pruned candidate's BatchNorm statistics are re-estimated on the training batches
  (``data``) before it is scored: stale statistics make a one-shot-pruned ResNet look broken
  although fine-tuning recovers it, which ranks targets by the wrong thing
  (:mod:`prunekit.batchnorm_stats`);
- the metrics are the task's (:mod:`prunekit.tasks`); :func:`headline` names the one a bound
  is stated in and its unit (accuracy in percentage points, R² as it is, PSNR in dB);
- a result is cached in one JSON file under a fingerprint of the model's architecture and
  weights, the held-out data, the grid, the criterion, the task and loss: a rerun with the same
  inputs reads it back, anything changed recomputes it (with a one-line notice).

Pruning a target at an amount goes through :func:`prune_amounts`, the one function that applies
per-target amounts for the dashboard's what-ifs as well.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
>>> x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
>>> result = measure_sensitivity(net, x[:1], (x, y), amounts=(0.5, 0.9), progress=False)
>>> [c.target for c in result.curves], len(result.curves[0].values["accuracy"])
(['0'], 2)
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from prunekit.batchnorm_stats import has_batchnorm, reestimate_batchnorm
from prunekit.io import write_text_atomic
from prunekit.progress import progress_bar
from prunekit.resume import fingerprint, tensors_digest
from prunekit.tasks import evaluate_task, get_task, headline

log = logging.getLogger(__name__)

Granularity = Literal["structured", "unstructured"]
Row = dict[str, Any]

AMOUNTS: dict[str, tuple[float, ...]] = {
    "structured": (0.25, 0.5, 0.75, 0.9),
    "unstructured": (0.5, 0.7, 0.9, 0.95),
}
"""The default grid of amounts per granularity (fraction of a target's units or weights)."""
CRITERIA = {"structured": "l2", "unstructured": "magnitude"}
"""The default criterion per granularity."""
def prune_amounts(
    model: nn.Module,
    example_input: Tensor,
    granularity: Granularity,
    amounts: Mapping[str, float],
    *,
    criterion: str | None = None,
    data: Sequence[tuple[Tensor, Tensor]] | Any = None,
) -> dict[str, Any]:
    """Prune ``model`` in place, each target by its own amount; return what the pruner did.

    Structured targets are group indices as strings (``"0"``, ``"3"``); each group loses its
    amount of units by the library's per-layer rule. Unstructured targets are weight names
    (``"net.1.weight"``, as :func:`prunekit.unstructured.targets` names them, or a layer's name
    for its ``weight``); the zeros are made permanent.

    >>> import torch
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> prune_amounts(net, torch.zeros(1, 4), "structured", {"0": 0.5})["removed_units"]
    4
    >>> net[0].out_features
    4
    """
    criterion = criterion or CRITERIA[granularity]
    if granularity == "structured":
        return _prune_groups(model, example_input, amounts, criterion, data)
    if granularity == "unstructured":
        return _prune_weights(model, amounts, criterion)
    raise ValueError(f"granularity must be 'structured' or 'unstructured', got {granularity!r}")


def _prune_groups(
    model: nn.Module, example_input: Tensor, amounts: Mapping[str, float], criterion: str,
    data: Any,
) -> dict[str, Any]:
    from prunekit.structured.prune import graph_and_scores, plan_removal, remove_planned

    start = time.perf_counter()
    inputs, graph, scores = graph_and_scores(model, example_input, criterion, data, ())
    remove = np.zeros(graph.num_units, dtype=bool)
    for key, ratio in amounts.items():
        if not key.isdigit() or int(key) >= len(graph.groups):
            raise ValueError(f"no pruning group {key!r}; the model has {len(graph.groups)} "
                             f"(0–{len(graph.groups) - 1})")
        units = graph.groups[int(key)].units  # the library's own per-layer rule, one group
        remove[units] = plan_removal(graph, scores.scores, ratio, scope="layer")[units]
    report = remove_planned(graph, scores, remove, inputs, max(amounts.values(), default=0.0),
                            start)
    return {"removed_units": report.removed, "units": report.units,
            "groups": [{"modules": list(g.modules), "units": g.units, "removed": g.removed}
                       for g in report.groups]}


def _prune_weights(model: nn.Module, amounts: Mapping[str, float], criterion: str) -> dict:
    from prunekit.masks import strip
    from prunekit.unstructured import prune_by_ratio, targets

    names = [weight.name for weight in targets(model)]
    layers: dict[str, float] = {}
    for given, ratio in amounts.items():
        name = given if given in names else f"{given}.weight"  # a layer stands for its weight
        if name not in names:
            raise ValueError(f"no prunable layer {given!r}; the layers are {names}")
        others = [n for n in names if n != name]
        layers |= prune_by_ratio(model, ratio, scope="layer", criterion=criterion, ignore=others)
    strip(model)
    return {"layer_sparsity": layers}


@dataclass(frozen=True)
class Curve:
    """One target's metrics at each amount of the grid (``values[metric][i]`` at
    ``amounts[i]``); ``key`` is what :func:`prune_amounts` takes, ``target`` what a person
    reads (the group's modules joined by ``+``, or the weight's name)."""

    key: str
    target: str
    size: int
    amounts: tuple[float, ...]
    values: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class Sensitivity:
    """Every target's curve, the dense model's metrics, and how they were measured."""

    granularity: Granularity
    criterion: str
    task: str
    loss: str
    dense: dict[str, float]
    curves: list[Curve]
    fingerprint: str
    seconds: float
    held_out: int
    cached: bool = field(default=False, compare=False)

    def drop(self, curve: Curve, amount: float) -> float:
        """The headline metric's loss (in the bound's unit, never below 0) with ``curve``'s
        target alone pruned by ``amount``, linear between the grid's points (0 at 0).

        >>> c = Curve("0", "fc", 8, (0.5, 1.0), {"accuracy": (0.8, 0.4)})
        >>> s = Sensitivity("structured", "l2", "classification", "cross_entropy",
        ...                 {"accuracy": 0.9}, [c], "f", 0.0, 10)
        >>> round(s.drop(c, 0.25), 2), round(s.drop(c, 0.75), 2)
        (5.0, 30.0)
        """
        metric, scale, _ = headline(self.task)
        values = [self.dense[metric], *curve.values[metric]]
        value = float(np.interp(amount, [0.0, *curve.amounts], values))
        drop = scale * (self.dense[metric] - value)
        return drop if math.isfinite(drop) and drop > 0 else 0.0 if math.isfinite(drop) else 1e9

    def rows(self, variant: str) -> list[Row]:
        """The run store's sensitivity rows (one per target, amount and finite metric)."""
        return [{"variant": variant, "target": c.target, "granularity": self.granularity,
                 "amount": amount, "metric": metric, "value": value}
                for c in self.curves for metric, values in c.values.items()
                for amount, value in zip(c.amounts, values) if math.isfinite(value)]

    def to_json(self) -> str:
        payload = {k: v for k, v in asdict(self).items() if k != "cached"}
        return json.dumps(payload, indent=1, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> Sensitivity:
        data = json.loads(text)
        curves = [Curve(c["key"], c["target"], c["size"], tuple(c["amounts"]),
                        {m: tuple(v) for m, v in c["values"].items()}) for c in data["curves"]]
        return cls(data["granularity"], data["criterion"], data["task"], data["loss"],
                   data["dense"], curves, data["fingerprint"], data["seconds"],
                   data["held_out"], cached=True)


def _targets(model: nn.Module, example_input: Tensor, granularity: Granularity) -> list[tuple]:
    """(key, readable name, size) of every target of ``granularity``."""
    if granularity == "structured":
        from prunekit.structured import build_graph

        graph = build_graph(model, example_input)
        return [(str(g.index), "+".join(g.modules), g.size) for g in graph.groups]
    from prunekit.unstructured import targets

    return [(w.name, w.name, int(w.tensor.numel())) for w in targets(model)]


def sensitivity_fingerprint(
    model: nn.Module, example_input: Tensor, held_out: tuple[Tensor, Tensor], *,
    granularity: str, amounts: Sequence[float], criterion: str, task: str, loss: str,
    data: Sequence[tuple[Tensor, Tensor]] = (), recalibrate_batchnorm: bool = True,
) -> str:
    """What a cached result must match: architecture, weights, held-out data, grid, criterion,
    task, loss, scoring batches, BatchNorm re-estimation, the example's shape and prunekit's
    version."""
    state = model.state_dict()
    return fingerprint(
        importlib.metadata.version("prunekit"), repr(model),
        tensors_digest(*(state[k] for k in sorted(state))), tensors_digest(*held_out),
        tensors_digest(*(t for batch in data for t in batch)), list(example_input.shape),
        granularity, [float(a) for a in amounts], criterion, task, loss,
        bool(recalibrate_batchnorm),
    )


def measure_sensitivity(
    model: nn.Module,
    example_input: Tensor,
    held_out: tuple[Tensor, Tensor],
    *,
    granularity: Granularity = "structured",
    amounts: Sequence[float] | None = None,
    criterion: str | None = None,
    task: str = "classification",
    loss: str | None = None,
    data: Sequence[tuple[Tensor, Tensor]] = (),
    recalibrate_batchnorm: bool = True,
    cache: str | Path | None = None,
    progress: bool = True,
) -> Sensitivity:
    """Each target of ``model`` alone pruned one-shot at each of ``amounts``, scored on
    ``held_out`` by the task's metrics; ``model`` itself is never changed.

    ``data`` are a few training batches for data-driven criteria (``taylor``, ``apoz``...) and,
    with ``recalibrate_batchnorm`` (the default), for re-estimating each pruned candidate's
    BatchNorm statistics before it is scored (:mod:`prunekit.batchnorm_stats`; never on
    ``held_out``, which only scores).
    With ``cache`` (a JSON file), a result measured on the same inputs is read back instead of
    measured, and a new one is written there (atomically).
    """
    granularity_amounts = AMOUNTS.get(granularity)
    if granularity_amounts is None:
        raise ValueError(f"granularity must be 'structured' or 'unstructured', got "
                         f"{granularity!r}")
    grid = tuple(sorted(float(a) for a in (amounts or granularity_amounts)))
    if not grid or any(not 0.0 < a < 1.0 for a in grid):
        raise ValueError(f"amounts must be fractions in (0, 1), got {list(grid)}")
    criterion = criterion or CRITERIA[granularity]
    loss = loss or get_task(task).default_loss
    wanted = sensitivity_fingerprint(model, example_input, held_out, granularity=granularity,
                                     amounts=grid, criterion=criterion, task=task, loss=loss,
                                     data=data, recalibrate_batchnorm=recalibrate_batchnorm)
    cached = _read_cache(cache, wanted)
    if cached is not None:
        return cached
    if recalibrate_batchnorm and not data and has_batchnorm(model):
        log.warning("sensitivity: no training batches (data=...), so BatchNorm statistics are "
                    "not re-estimated; one-shot scores of this model will look worse than "
                    "fine-tuning leaves them")
    start = time.perf_counter()
    dense = evaluate_task(model, *held_out, task=task, loss=loss)
    curves = []
    found = _targets(model, example_input, granularity)
    with progress_bar(enabled=progress) as bar:
        job = bar.add_task(f"{granularity} sensitivity", total=len(found) * len(grid))
        for key, target, size in found:
            values: dict[str, list[float]] = {metric: [] for metric in dense}
            for amount in grid:
                pruned = copy.deepcopy(model)
                prune_amounts(pruned, example_input, granularity, {key: amount},
                              criterion=criterion, data=data)
                if recalibrate_batchnorm:
                    reestimate_batchnorm(pruned, [x for x, _ in data])
                for metric, value in evaluate_task(pruned, *held_out, task=task,
                                                   loss=loss).items():
                    values[metric].append(value)
                bar.update(job, advance=1)
            curves.append(Curve(key, target, size, grid,
                                {m: tuple(v) for m, v in values.items()}))
    result = Sensitivity(granularity, criterion, task, loss, dense, curves, wanted,
                         time.perf_counter() - start, len(held_out[1]))
    if cache is not None:
        write_text_atomic(cache, result.to_json() + "\n")
    return result


def _read_cache(cache: str | Path | None, wanted: str) -> Sensitivity | None:
    if cache is None or not Path(cache).is_file():
        return None
    try:
        result = Sensitivity.from_json(Path(cache).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("sensitivity: %s is not a readable result; measuring again", cache)
        return None
    if result.fingerprint != wanted:
        log.warning("sensitivity: the model, data, grid or criterion changed since %s was "
                    "measured; measuring again", cache)
        return None
    log.info("sensitivity: reusing %s", cache)
    return result


def sensitivity_table(result: Sensitivity) -> str:
    """A Markdown table: one row per target, the headline metric at each amount.

    >>> c = Curve("0", "fc", 8, (0.5,), {"accuracy": (0.8,)})
    >>> s = Sensitivity("structured", "l2", "classification", "cross_entropy",
    ...                 {"accuracy": 0.9}, [c], "f", 0.0, 10)
    >>> sensitivity_table(s).splitlines()[2]
    '| fc | 8 | 80.00 (−10.00) |'
    """
    metric, scale, unit = headline(result.task)
    header = ["target", "units" if result.granularity == "structured" else "weights"]
    header += [f"{metric} at {100 * a:g} %" for a in result.curves[0].amounts] if result.curves else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for curve in result.curves:
        cells = [curve.target, f"{curve.size:,}"]
        for value in curve.values[metric]:
            delta = scale * (value - result.dense[metric])
            cells.append(f"{scale * value:.2f} ({delta:+.2f})".replace("-", "−"))
        lines.append("| " + " | ".join(cells) + " |")
    dense = f"dense {metric}: {scale * result.dense[metric]:.2f}; changes in {unit}"
    return "\n".join(lines) + f"\n\n{dense}, on {result.held_out} held-out samples.\n"


def sensitivity_plot(result: Sensitivity) -> bytes:
    """PNG: the headline metric against the amount, one line per target."""
    from prunekit.report.plots import _png, plt

    metric, scale, _ = headline(result.task)
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for curve in result.curves:
        axis.plot([0.0, *curve.amounts],
                  [scale * result.dense[metric], *(scale * v for v in curve.values[metric])],
                  marker="o", label=curve.target[:40])
    axis.set_xlabel(f"amount pruned ({result.granularity}, {result.criterion})")
    axis.set_ylabel(metric)
    if len(result.curves) <= 16:
        axis.legend(fontsize=6)
    return _png(figure)


def write_sensitivity(results: Sequence[Sensitivity], out_dir: str | Path) -> dict[str, Path]:
    """``sensitivity.md`` (every table) and one ``sensitivity-<granularity>.png`` per result."""
    from prunekit.io import atomic_write

    out = Path(out_dir)
    paths = {"md": out / "sensitivity.md"}
    write_text_atomic(paths["md"], "\n".join(
        f"## {r.granularity} ({r.criterion})\n\n{sensitivity_table(r)}" for r in results))
    for result in results:
        path = out / f"sensitivity-{result.granularity}.png"
        with atomic_write(path) as temporary:
            temporary.write_bytes(sensitivity_plot(result))
        paths[result.granularity] = path
    return paths
