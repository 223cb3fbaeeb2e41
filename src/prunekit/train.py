"""Training, fine-tuning and distillation: one loop that pruning plugs into through callbacks.

The loop is deliberately plain: a seeded shuffle, forward, ``task loss + regularizers``,
backward, step, then each callback's ``on_step_end``. Pruning (gradual schedules, mask
enforcement, proximal steps) lives in callbacks, so the loop itself never knows about masks.

Callbacks are any objects with any of these methods (``step`` is the 0-based global index of
the optimizer step): ``on_fit_start(model, optimizer)``; ``on_step_begin(step, model,
optimizer)`` before the forward pass; ``on_before_step(step, model, optimizer)`` between
backward and the optimizer step (gradients are there to edit); ``on_step_end(step, model,
optimizer)`` after it; ``on_epoch_end(epoch, model)``; ``on_epoch_summary(summary)`` with the
epoch's ``{"epoch", "loss"}`` (what progress displays show); ``on_fit_end(model)``.

A model that holds pruning masks is trained with :class:`prunekit.masks.MaskEnforcement` even
if no callback asks for it, so that pruned weights can never grow back by accident.

A checkpoint (model, optimizer, epoch, RNG) is written atomically after every epoch when
``checkpoint`` is given; calling ``fit`` again with the same path resumes after the last
finished epoch.

Launched by ``torchrun`` (see :mod:`prunekit.distributed`), the same call trains under
DistributedDataParallel: every rank draws the same seeded permutation, ``batch_size`` is the
global batch and each rank takes its share of it, each share's loss is weighted by its size so
the averaged gradient is the global batch's, rank 0's masks are broadcast whenever a callback
changed any, and rank 0 alone writes the checkpoint (which every rank resumes from).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit import distributed
from prunekit.io import atomic_write
from prunekit.losses import Loss, LossFunction, resolve_loss
from prunekit.modes import train_mode
from prunekit.progress import progress_bar

log = logging.getLogger(__name__)

Regularizer = Callable[[nn.Module], Tensor]

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, momentum, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay
    ),
    "adam": lambda params, lr, momentum, weight_decay: torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay
    ),
    "adamw": lambda params, lr, momentum, weight_decay: torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay
    ),
}


@dataclass
class History:
    """Per-epoch training loss and wall time; what ``fit`` returns."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0

    @property
    def final_loss(self) -> float:
        return self.epochs[-1]["loss"] if self.epochs else math.nan


@dataclass(frozen=True)
class Distillation:
    """Learn from a dense teacher as well as the targets (Hinton et al. 2015).

    The loss becomes ``(1 - alpha) * task + alpha * soft``. With class labels, ``soft`` is
    Hinton's ``T² * KL(teacher_T || student_T)`` on the logits. With float targets (regression,
    reconstruction, multilabel) there is no class distribution to soften, so ``soft`` is the
    task loss against the teacher's predictions (MSE to its outputs, BCE to its probabilities)
    and ``temperature`` is unused.
    """

    teacher: nn.Module
    alpha: float = 0.5
    temperature: float = 4.0

    def loss(
        self, student_output: Tensor, inputs: Tensor, targets: Tensor, task_loss: Loss
    ) -> Tensor:
        with torch.no_grad():
            teacher_output = self.teacher(inputs)
        if targets.is_floating_point():
            return task_loss(student_output, task_loss.predict(teacher_output))
        t = self.temperature
        return F.kl_div(
            F.log_softmax(student_output / t, dim=1),
            F.log_softmax(teacher_output / t, dim=1),
            log_target=True,
            reduction="batchmean",
        ) * (t * t)


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool, generator: torch.Generator | None
) -> list[tuple[Tensor, Tensor]]:
    """Split tensors into mini-batches, shuffled by ``generator`` when asked."""
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    return [
        (x[order[i : i + batch_size]], y[order[i : i + batch_size]])
        for i in range(0, len(x), batch_size)
    ]


def fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    loss: str | LossFunction | Loss = "cross_entropy",
    trust_code: bool = False,
    regularizers: Sequence[Regularizer] = (),
    callbacks: Sequence[Any] = (),
    distillation: Distillation | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    description: str = "train",
) -> History:
    """Train ``model`` in place on ``(x, y)`` and return the loss history.

    ``loss`` is a name from :data:`prunekit.losses.LOSSES` (``cross_entropy``, ``sparsemax``,
    ``mse``, ``l1``, ``bce_with_logits``), a Python callable ``f(output, target)``, or
    ``"package.module:function"``, which is imported only with ``trust_code=True``. An
    autoencoder trains with ``fit(model, x, x, loss="mse")``. The model trains in training
    mode, submodules a user put in eval (a frozen BatchNorm) staying in eval, and every
    submodule's own mode is restored afterwards.

    >>> from prunekit.models import build_model
    >>> from prunekit.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> net = build_model("mlp", in_features=64, hidden=(32,))
    >>> fit(net, ds.x_train, ds.y_train, epochs=1, progress=False).steps
    23
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    task_loss = resolve_loss(loss, trust_code=trust_code)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    place = distributed.device()  # a rank's GPU under nccl; otherwise nothing is moved
    moved = place.type != "cpu"
    if moved:
        model.to(place)
        if distillation is not None:
            distillation.teacher.to(place)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr, momentum, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    start_epoch = _resume(checkpoint, model, opt, generator, history)

    callbacks = _with_mask_enforcement(model, callbacks)
    _call(callbacks, "on_fit_start", model, opt)
    net = distributed.wrap(model)  # the model itself in one process
    steps_per_epoch = math.ceil(len(x) / batch_size)
    step = start_epoch * steps_per_epoch
    with train_mode(model), progress_bar(enabled=progress and distributed.is_writer()) as bar:
        bar_task = bar.add_task(description, total=(epochs - start_epoch) * steps_per_epoch)
        for epoch in range(start_epoch, epochs):
            total, count = 0.0, 0
            for xb, yb, weight in _shares(x, y, batch_size, generator, place if moved else None):
                masks_before = _mask_generation()
                _call(callbacks, "on_step_begin", step, model, opt)
                if _mask_generation() != masks_before:
                    distributed.broadcast_module(model)  # rank 0's pruning decision, everywhere
                out = net(xb)
                task = task_loss(out, yb)
                if distillation is not None:
                    a = distillation.alpha
                    soft = distillation.loss(out, xb, yb, task_loss)
                    task = (1 - a) * task + a * soft
                batch_loss = task if weight == 1.0 else task * weight
                for reg in regularizers:
                    batch_loss = batch_loss + reg(model)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                _call(callbacks, "on_before_step", step, model, opt)
                opt.step()
                _call(callbacks, "on_step_end", step, model, opt)
                step += 1
                if weight:  # the loss as one process would log it, not its weighted share
                    seen = batch_loss if weight == 1.0 else batch_loss + (1.0 - weight) * task
                    total += float(seen.detach()) * len(xb)
                    count += len(xb)
                bar.update(bar_task, advance=1, description=f"{description} e{epoch + 1}/{epochs}")
            total, count = distributed.all_sum([total, count])
            history.epochs.append({"epoch": epoch, "loss": total / count})
            _call(callbacks, "on_epoch_end", epoch, model)
            _call(callbacks, "on_epoch_summary", history.epochs[-1])
            if checkpoint is not None:
                if distributed.is_writer():
                    _save_checkpoint(checkpoint, model, opt, generator, epoch + 1, history)
                distributed.barrier()  # no rank goes on before the epoch is safely on disk
        history.steps = step
        _call(callbacks, "on_fit_end", model)
    distributed.broadcast_module(model)  # rank 0's BatchNorm statistics, from its last forward
    if moved:
        model.to("cpu")
        if distillation is not None:
            distillation.teacher.to("cpu")
    return history


def _mask_generation() -> int:
    from prunekit.masks import generation

    return generation()


def _shares(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator,
    place: torch.device | None,
) -> list[tuple[Tensor, Tensor, float]]:
    """This rank's share of each global batch and the weight of its loss.

    A share's mean loss is weighted by ``world_size × share / batch``, so DDP's average of
    the ranks' gradients is exactly the gradient of the global batch's mean loss. A rank left
    without samples (a last batch smaller than the world) takes one with weight 0, so it still
    joins the gradient exchange.
    """
    world, here = distributed.world_size(), distributed.rank()
    shares = []
    for xb, yb in batches(x, y, batch_size, shuffle=True, generator=generator):
        if world > 1:
            index = distributed.shard(torch.arange(len(xb)), here, world)
            weight = world * len(index) / len(xb)
            index = index if len(index) else torch.arange(1)
            xb, yb = xb[index], yb[index]
        else:
            weight = 1.0
        shares.append((xb, yb, weight) if place is None else (xb.to(place), yb.to(place), weight))
    return shares


def _with_mask_enforcement(model: nn.Module, callbacks: Sequence[Any]) -> list[Any]:
    from prunekit.masks import MaskEnforcement, has_masks

    callbacks = list(callbacks)
    if has_masks(model) and not any(isinstance(cb, MaskEnforcement) for cb in callbacks):
        callbacks.insert(0, MaskEnforcement())
    return callbacks


def _call(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


def _save_checkpoint(
    path: str | Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    next_epoch: int,
    history: History,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": generator.get_state(),
        "next_epoch": next_epoch,
        "history": history.epochs,
    }
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def _resume(
    path: str | Path | None,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    history: History,
) -> int:
    data = None if path is None else distributed.read_on_writer(path)
    if data is None:
        return 0
    state = torch.load(io.BytesIO(data), map_location=distributed.device(), weights_only=True)
    _install_missing_masks(model, state["model"])
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    history.epochs = list(state["history"])
    log.info("resumed %s at epoch %d", path, state["next_epoch"])
    return int(state["next_epoch"])


def _install_missing_masks(model: nn.Module, state: dict[str, Tensor]) -> None:
    """A checkpoint taken mid-pruning holds mask buffers the fresh model lacks: add them."""
    own = set(model.state_dict())
    missing = [k for k in state if k not in own and k.endswith("_mask")]
    if not missing:
        return
    from prunekit.masks import set_mask

    for key in missing:
        module_name, _, buffer = key.rpartition(".")
        set_mask(model.get_submodule(module_name), buffer.removesuffix("_mask"), state[key])
