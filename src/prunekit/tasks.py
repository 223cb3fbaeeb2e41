"""What a model is trained to do, and so which losses fit it and which metrics prove it.

Why: "accuracy" means nothing for an autoencoder or a regression model, and cross-entropy cannot
train them. A :class:`Task` ties together the targets a data set holds, the losses that can learn
them (the first is the default) and the metrics a report shows, headline first:

============== ============================ ================================= ==================
task           targets                      losses                            metrics
============== ============================ ================================= ==================
classification integer class labels         cross_entropy, sparsemax          accuracy, loss
multilabel     0/1 per label, float         bce_with_logits                   accuracy, loss
regression     float values                 mse, l1                           r2, mse, mae, loss
reconstruction the input itself             mse, l1, bce_with_logits          psnr, mse, loss
============== ============================ ================================= ==================

A user's ``package.module:function`` loss fits every task; its metrics are the task's.
Multilabel accuracy is over every (sample, label) decision, at probability 0.5. R² is
scikit-learn's: ``1 − SS_res / SS_tot`` per output column, averaged. PSNR is
``10·log10(peak² / MSE)`` over the whole set, ``peak`` the targets' range (1 for images in
[0, 1]). All metrics are computed on the loss's predictions (``sigmoid`` of BCE logits).

>>> import torch
>>> from torch import nn
>>> model = nn.Identity()
>>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
>>> scores = evaluate_task(model, x, x + 0.1, task="regression")
>>> round(scores["mse"], 4), round(scores["r2"], 3)
(0.01, 0.992)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.losses import Loss, LossFunction, TargetKind, resolve_loss
from prunekit.modes import eval_mode


@dataclass(frozen=True)
class Task:
    """A kind of learning problem: its targets, the losses that fit it, its metrics."""

    name: str
    target: TargetKind
    losses: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def check_loss(self, loss: str | LossFunction | Loss, *, trust_code: bool = False) -> Loss:
        """The resolved loss, or one line saying that it does not fit this task and what does."""
        resolved = resolve_loss(loss, trust_code=trust_code)
        if resolved.target != "any" and resolved.name not in self.losses:
            raise ValueError(
                f"loss {resolved.name!r} does not fit a {self.name} task; use one of "
                f"{list(self.losses)} or your own as 'package.module:function'"
            )
        return resolved


TASKS: dict[str, Task] = {
    "classification": Task("classification", "class", ("cross_entropy", "sparsemax"),
                           ("accuracy", "loss")),
    "multilabel": Task("multilabel", "value", ("bce_with_logits",), ("accuracy", "loss")),
    "regression": Task("regression", "value", ("mse", "l1"), ("r2", "mse", "mae", "loss")),
    "reconstruction": Task("reconstruction", "value", ("mse", "l1", "bce_with_logits"),
                           ("psnr", "mse", "loss")),
}
"""Task name → :class:`Task`."""


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name fails with the list of known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


HEADLINE_UNITS: dict[str, tuple[float, str]] = {"accuracy": (100.0, "pt"), "r2": (1.0, "R²"),
                                                "psnr": (1.0, "dB")}
"""Headline metric → (scale to the unit a drop is stated in, that unit). Every headline
metric is higher-is-better, so a drop is ``scale · (dense − pruned)`` for all of them."""


def headline(task: str) -> tuple[str, float, str]:
    """The metric ``task`` is judged by (its first metric), its scale and unit.

    >>> headline("classification"), headline("reconstruction")
    (('accuracy', 100.0, 'pt'), ('psnr', 1.0, 'dB'))
    """
    metric = get_task(task).metrics[0]
    return (metric, *HEADLINE_UNITS[metric])

class _Sums:
    """Running sums over batches, in float64, from which every task's metrics follow."""

    def __init__(self) -> None:
        self.samples = 0
        self.loss = 0.0
        self.correct = 0.0
        self.decisions = 0
        self.squared = torch.zeros(())
        self.absolute = 0.0
        self.values = 0
        self.target_sum = torch.zeros(())
        self.target_squares = torch.zeros(())
        self.low, self.high = math.inf, -math.inf

    def add_classes(self, prediction: Tensor, target: Tensor) -> None:
        self.correct += float((prediction.argmax(dim=1) == target).sum())
        self.decisions += target.numel()

    def add_values(self, prediction: Tensor, target: Tensor, labels: bool) -> None:
        p, t = prediction.double(), target.double()
        columns = t.reshape(len(t), -1)
        error = (p - t).reshape(len(t), -1)
        self.squared = self.squared + (error**2).sum(dim=0)
        self.absolute += float(error.abs().sum())
        self.values += error.numel()
        self.target_sum = self.target_sum + columns.sum(dim=0)
        self.target_squares = self.target_squares + (columns**2).sum(dim=0)
        self.low, self.high = min(self.low, float(t.min())), max(self.high, float(t.max()))
        if labels:
            self.correct += float(((p > 0.5) == (t > 0.5)).sum())
            self.decisions += t.numel()

    def metrics(self) -> dict[str, float]:
        mse = float(self.squared.sum()) / self.values if self.values else math.nan
        total = self.target_squares - self.target_sum**2 / max(self.samples, 1)
        # scikit-learn's convention for a constant column: 1 if predicted exactly, else 0
        per_column = torch.where(
            total > 0, 1.0 - self.squared / total.clamp(min=1e-300),
            (self.squared == 0).double(),
        )
        r2 = per_column.mean() if self.values else torch.tensor(math.nan)
        peak = self.high - self.low
        return {
            "loss": self.loss / self.samples,
            "accuracy": self.correct / self.decisions if self.decisions else math.nan,
            "mse": mse,
            "mae": self.absolute / self.values if self.values else math.nan,
            "r2": float(r2),
            "psnr": 10.0 * math.log10(peak**2 / mse) if mse > 0 and peak > 0 else math.inf,
        }


@torch.no_grad()
def evaluate_task(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    task: str = "classification",
    loss: str | LossFunction | Loss | None = None,
    trust_code: bool = False,
    batch_size: int = 256,
) -> dict[str, float]:
    """The task's metrics (see the table above) of ``model`` on ``(x, y)``, in eval mode.

    ``loss`` defaults to the task's first. Every submodule's train/eval mode is restored after.
    """
    spec = get_task(task)
    criterion = spec.check_loss(loss or spec.default_loss, trust_code=trust_code)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("evaluation needs at least one sample; the test split is empty")
    sums = _Sums()
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out = model(xb)
            sums.loss += float(criterion(out, yb)) * len(xb)
            sums.samples += len(xb)
            prediction = criterion.predict(out)
            if spec.target == "class":
                sums.add_classes(prediction, yb)
            else:
                sums.add_values(prediction, yb, labels=spec.name == "multilabel")
    values = sums.metrics()
    return {name: values[name] for name in spec.metrics}

