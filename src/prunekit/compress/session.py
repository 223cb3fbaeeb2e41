"""One compression's working state: its splits, the dense model's numbers, and the four things
every step does with them — fine-tune, probe a candidate, prune to an allocation, measure a row.

Why a class apart from the path (:mod:`.run`): the path decides *which* allocation each step
takes and when to stop; this holds *how* each is done, identically for the steps, the probes and
the uniform baseline (:mod:`.uniform`), so that the comparison between them stays even.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.batchnorm_stats import reestimate_batchnorm
from prunekit.compress.budget import Budget, LatencyBackend, file_bytes
from prunekit.compress.fine_tuning import CosineDecay, KeepBestEpoch
from prunekit.data import Dataset
from prunekit.evaluate import count_macs, count_params, prunable_sparsity
from prunekit.sensitivity import AMOUNTS, headline
from prunekit.structured.importance import ScoringData, first_batches
from prunekit.structured.prune import graph_and_scores, remove_planned
from prunekit.tasks import evaluate_task, get_task
from prunekit.train import Distillation, fit

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """How :func:`compress` prunes and recovers (every field has the CLI's default)."""

    steps: int = 3
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    loss: str | None = None
    distill: bool = False
    criterion: str = "l2"
    max_layer_ratio: float = 0.9
    round_to: int = 1
    validation: float = 0.2
    amounts: tuple[float, ...] = AMOUNTS["structured"]
    threads: int | None = None
    backend: LatencyBackend = "torch"
    latency_budget_s: float = 10.0
    uniform: bool = True
    candidates: int = 3
    probe_epochs: float = 0.5
    seed: int = 0


DEFAULT_SETTINGS = Settings()
"""What :func:`prunekit.compress.compress` uses when given no settings."""


def validation_split(
    data: Dataset, fraction: float, seed: int = 0
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(fit, validation) from the training split, seeded: the validation samples judge the
    quality bound and feed the sensitivity, and nothing trains on them.

    >>> from prunekit.data import load_dataset
    >>> (x_fit, _), (x_val, _) = validation_split(load_dataset("digits"), 0.2)
    >>> len(x_fit), len(x_val)
    (1151, 287)
    """
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))
    n_val = int(fraction * len(order))
    if not 1 <= n_val < len(order):
        raise ValueError(f"validation={fraction} leaves {n_val} validation samples of "
                         f"{len(order)}: give a fraction that keeps both sides non-empty")
    val, rest = order[:n_val], order[n_val:]
    return (data.x_train[rest], data.y_train[rest]), (data.x_train[val], data.y_train[val])


class Session:
    """One compression: the splits, the dense model's numbers, the fine-tuning."""

    def __init__(self, model: nn.Module, data: Dataset, budget: Budget, max_drop: float,
                 settings: Settings, latency_input: Tensor, trust_code: bool,
                 progress: bool, held_out: tuple[Tensor, Tensor] | None) -> None:
        self.settings, self.budget, self.max_drop = settings, budget, max_drop
        self.task = get_task(data.task)
        self.loss = self.task.check_loss(settings.loss or self.task.default_loss,
                                         trust_code=trust_code)
        self.metric, self.scale, self.unit = headline(data.task)
        if held_out is None:
            (self.x_fit, self.y_fit), (self.x_val, self.y_val) = validation_split(
                data, settings.validation, settings.seed)
        else:  # the caller's held-out set: the whole training split fine-tunes
            (self.x_fit, self.y_fit), (self.x_val, self.y_val) = (
                (data.x_train, data.y_train), held_out)
        self.data, self.example = data, data.x_train[:1]
        self.latency_input = latency_input
        self.trust_code, self.progress = trust_code, progress
        self.teacher = copy.deepcopy(model).eval()
        self.scoring = ScoringData(
            first_batches(self.x_fit, self.y_fit),
            loss=self.loss,
        )
        self.dense_val = self.validation_score(model)

    def validation_score(self, model: nn.Module) -> float:
        return evaluate_task(model, self.x_val, self.y_val, task=self.task.name,
                             loss=self.loss)[self.metric]

    def drop(self, score: float) -> float:
        return self.scale * (self.dense_val - score)

    def over_bound(self, drop: float) -> bool:
        """Is ``drop`` more than the bound? A drop equal to it is within ("at most"), also
        when the subtraction leaves a rounding residue (0.97 - 0.96 is not exactly 0.01)."""
        return drop > self.max_drop + 1e-9 * max(1.0, abs(self.max_drop))

    def fine_tune(self, model: nn.Module, label: str, index: int) -> None:
        s = self.settings
        if s.epochs == 0:
            return
        fit(model, self.x_fit, self.y_fit, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
            optimizer=s.optimizer, loss=self.loss, seed=s.seed + index, progress=self.progress,
            description=label,
            callbacks=[CosineDecay(s.epochs * math.ceil(len(self.x_fit) / s.batch_size)),
                       KeepBestEpoch(self.validation_score)],
            distillation=Distillation(self.teacher) if s.distill else None)

    def probe(self, model: nn.Module, removed: dict[str, int], sizes: dict[str, int],
              index: int) -> float:
        """Minus the validation loss of a copy of ``model`` pruned to ``removed``, its
        BatchNorm statistics re-estimated and trained for ``probe_epochs`` (on a seeded share
        of the fit split, the same for every candidate of a step); ``model`` itself is left as
        it is. The loss rather than the metric: on a validation split of hundreds of samples
        the accuracy moves in steps of a few tenths of a point and ties the candidates, where
        the loss still orders them."""
        s = self.settings
        trial = copy.deepcopy(model)
        self.prune_to(trial, removed, sizes)
        reestimate_batchnorm(trial, [x for x, _ in self.scoring.batches])
        count = int(s.probe_epochs * len(self.x_fit)) if s.epochs else 0
        if count >= 1:
            pick = torch.randperm(len(self.x_fit),
                                  generator=torch.Generator().manual_seed(s.seed + index))[:count]
            fit(trial, self.x_fit[pick], self.y_fit[pick], epochs=1, lr=s.lr,
                batch_size=s.batch_size, optimizer=s.optimizer, loss=self.loss,
                seed=s.seed + index, progress=False,
                callbacks=[CosineDecay(math.ceil(count / s.batch_size))],
                distillation=Distillation(self.teacher) if s.distill else None)
        return -evaluate_task(trial.eval(), self.x_val, self.y_val, task=self.task.name,
                              loss=self.loss)["loss"]

    def prune_to(self, model: nn.Module, removed: dict[str, int], sizes: dict[str, int]) -> None:
        """Remove units so that each group (by its modules) has lost ``removed`` of its dense
        ``sizes``; which units, the criterion decides on the current weights."""
        start = time.perf_counter()
        inputs, graph, scores = graph_and_scores(model, self.example, self.settings.criterion,
                                                 self.scoring, ())
        values = scores.scores.double().numpy()
        remove = np.zeros(graph.num_units, dtype=bool)
        for group in graph.groups:
            label = "+".join(group.modules)
            if label not in removed:
                log.warning("compress: group %s was not in the dense model's graph; kept", label)
                continue
            count = group.size - (sizes[label] - removed[label])
            s = values[group.units]
            valid = np.flatnonzero(~np.isnan(s))
            order = group.units[valid[np.argsort(s[valid], kind="stable")]]
            remove[order[: max(0, min(count, len(order)))]] = True
        remove_planned(graph, scores, remove, inputs, float(remove.mean()), start)

    def row(self, name: str, model: nn.Module, dense: Row | None, **extra: Any) -> Row:
        params, nonzero = count_params(model)
        scores = evaluate_task(model, self.data.x_test, self.data.y_test, task=self.task.name,
                               loss=self.loss)
        val = self.validation_score(model)
        size = file_bytes(model)
        row = {"name": name, "task": self.task.name, **scores, f"val_{self.metric}": val,
               "drop": self.drop(val), "params": params, "nonzero_params": nonzero,
               "sparsity": prunable_sparsity(model), "macs": count_macs(model, self.example),
               "file_bytes": size, "dense_file_bytes": dense["file_bytes"] if dense else size,
               **extra}
        key = {"macs": "macs", "params": "params", "size": "file_bytes"}.get(self.budget.kind)
        if key is not None:
            row["budget_fraction"] = row[key] / dense[key] if dense else 1.0
        return row
