"""Training losses by name, each knowing what targets it takes and what its outputs predict.

Why: a loss is more than ``f(output, target)``. Cross-entropy takes integer class labels; MSE
takes a tensor shaped exactly like the output, and given a ``(N,)`` target for a ``(N, 1)``
output it silently broadcasts to ``(N, N)`` and trains on nonsense. So every :class:`Loss`
declares its target kind and checks it on every call, failing with one line that names the fix.
It also knows how its outputs become predictions (``sigmoid`` for BCE-with-logits), which is
what metrics and distillation compare.

A user's own loss is named ``package.module:function``. Resolving it imports that module, which
runs its code, so :func:`resolve_loss` refuses unless the caller passed ``trust_code=True``
(``--trust-code`` on the command line), and refuses *before* importing anything.

>>> import torch
>>> LOSSES["mse"](torch.zeros(4, 1), torch.ones(4, 1)).item()
1.0
>>> LOSSES["mse"](torch.zeros(4, 1), torch.ones(4))
Traceback (most recent call last):
...
ValueError: loss 'mse': the model's output has shape (4, 1) but the targets have (4,); they must match (one target value per output value)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from prunekit.activations import SparsemaxLoss, sparsemax

LossFunction = Callable[[Tensor, Tensor], Tensor]
TargetKind = Literal["class", "value", "any"]

CALLABLE_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""``package.module:function``: how a recipe or the CLI names a user's loss."""


def _identity(output: Tensor) -> Tensor:
    return output


@dataclass(frozen=True)
class Loss:
    """A named loss: ``function(output, target)``, the targets it takes, what it predicts.

    ``target`` is ``"class"`` (integer class indices, one per sample), ``"value"`` (a float
    tensor shaped like the output) or ``"any"`` (a user's callable: not checked). ``predict``
    maps the model's output into the targets' space, e.g. logits to probabilities.
    """

    name: str
    function: LossFunction = field(repr=False)
    target: TargetKind
    predict: Callable[[Tensor], Tensor] = field(default=_identity, repr=False)

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        self.check(output, target)
        return self.function(output, target)

    def check(self, output: Tensor, target: Tensor) -> None:
        """Raise one actionable line if ``target`` is not what this loss takes."""
        if self.target == "class":
            if target.is_floating_point() or target.dtype == torch.bool:
                raise ValueError(
                    f"loss {self.name!r} takes integer class labels, but the targets are "
                    f"{str(target.dtype).removeprefix('torch.')} (a regression or reconstruction "
                    "task?); use loss 'mse' or 'l1', or convert labels with y.long()"
                )
            if target.shape != output.shape[:1] + output.shape[2:]:
                raise ValueError(
                    f"loss {self.name!r}: the model's output has shape {tuple(output.shape)} "
                    f"but the labels have {tuple(target.shape)}; give one label per sample and "
                    "one logit per class in dimension 1"
                )
        elif self.target == "value":
            if target.shape != output.shape:
                raise ValueError(
                    f"loss {self.name!r}: the model's output has shape {tuple(output.shape)} "
                    f"but the targets have {tuple(target.shape)}; they must match (one target "
                    "value per output value)"
                )
            if not target.is_floating_point():
                raise ValueError(
                    f"loss {self.name!r} takes float targets, but they are "
                    f"{str(target.dtype).removeprefix('torch.')}; class labels want "
                    "'cross_entropy', or convert the targets with y.float()"
                )


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss("cross_entropy", F.cross_entropy, "class",
                          lambda out: torch.softmax(out, dim=1)),
    "sparsemax": Loss("sparsemax", SparsemaxLoss(), "class", lambda out: sparsemax(out, dim=1)),
    "mse": Loss("mse", F.mse_loss, "value"),
    "l1": Loss("l1", F.l1_loss, "value"),
    "bce_with_logits": Loss("bce_with_logits", F.binary_cross_entropy_with_logits, "value",
                            torch.sigmoid),
}
"""Loss name → :class:`Loss`; add your own with ``LOSSES["name"] = Loss(...)``."""


def is_callable_name(name: str) -> bool:
    """True for a ``package.module:function`` name, which resolves by importing user code."""
    return bool(CALLABLE_PATTERN.match(name))


def check_loss_name(name: str) -> str:
    """``name`` if it can name a loss (without importing anything); else one line saying how.

    >>> check_loss_name("mylosses:huber")
    'mylosses:huber'
    """
    if name.endswith(".py") or ".py:" in name or "/" in name:
        raise ValueError(
            f"loss {name!r}: give your loss as 'package.module:function' (a module Python can "
            "import, e.g. on PYTHONPATH), not a file path"
        )
    if name in LOSSES or is_callable_name(name):
        return name
    raise ValueError(
        f"unknown loss {name!r}; choose one of {sorted(LOSSES)} or give your own as "
        "'package.module:function'"
    )


def resolve_loss(loss: str | LossFunction | Loss, *, trust_code: bool = False) -> Loss:
    """The :class:`Loss` for a name, a ``package.module:function`` (needs ``trust_code``), or a
    Python callable (already the caller's own code, so no opt-in is asked).

    >>> resolve_loss("l1").target
    'value'
    >>> resolve_loss("os:getcwd")
    Traceback (most recent call last):
    ...
    prunekit.user_code.UntrustedCodeError: loss 'os:getcwd' names Python code (module 'os'), and importing it runs that code; if you trust it, pass --trust-code (trust_code=True in Python)
    """
    if isinstance(loss, Loss):
        return loss
    if callable(loss):
        return Loss(getattr(loss, "__name__", type(loss).__name__), loss, "any")
    name = check_loss_name(loss)
    if name in LOSSES:
        return LOSSES[name]
    from prunekit.user_code import import_object

    function = import_object(name, trust_code=trust_code, what="loss")
    if not callable(function):  # a bad name, reported like every other bad loss name
        raise ValueError(f"loss {name!r} is not a function; name a callable")  # noqa: TRY004
    return Loss(name, function, "any")
