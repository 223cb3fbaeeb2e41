"""Sparsity schedules — sparsity as a function of the training step — and the callback that
prunes on them.

Schedules are small value objects with TF-MOT's semantics: calling one with a step returns
``(prune_now, sparsity)``; pruning happens at ``begin_step`` and every ``frequency`` steps after
it, up to ``end_step`` (``-1``: forever). For the same arguments, :class:`PolynomialDecay` and
:class:`ConstantSparsity` return the values ``tfmot.sparsity.keras`` returns.

- :class:`ConstantSparsity` — one target throughout.
- :class:`PolynomialDecay` — ``s_f + (s_i − s_f)·(1 − p)^power``, ``p`` the fraction of
  ``[begin_step, end_step]`` elapsed: prunes fast while many weights are redundant, then slowly.
- :func:`agp` — Zhu & Gupta's automated gradual pruning (2017): the cubic case of the above.
- :func:`iterative_targets` — Han et al.'s prune-and-retrain rounds, each removing the same
  fraction of the weights still alive.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.masks import MaskEnforcement, zero_pruned_state
from prunekit.unstructured import Scope, prune_by_ratio


def _check_sparsity(value: float, name: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _check_steps(begin_step: int, end_step: int, frequency: int, allow_forever: bool) -> None:
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0, got {begin_step}")
    if end_step == -1 and not allow_forever:
        raise ValueError("end_step cannot be -1 for a decaying schedule; give the last step")
    if end_step != -1 and end_step < begin_step:
        raise ValueError(f"end_step ({end_step}) is before begin_step ({begin_step})")
    if frequency < 1:
        raise ValueError(f"frequency must be >= 1, got {frequency}")


def _prune_now(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    in_range = step >= begin_step and (end_step == -1 or step <= end_step)
    return in_range and (step - begin_step) % frequency == 0


@dataclass(frozen=True)
class ConstantSparsity:
    """The same target at every pruning step.

    >>> ConstantSparsity(0.8, begin_step=10, frequency=5)(15)
    (True, 0.8)
    """

    target_sparsity: float
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_sparsity(self.target_sparsity, "target_sparsity")
        _check_steps(self.begin_step, self.end_step, self.frequency, allow_forever=True)

    def __call__(self, step: int) -> tuple[bool, float]:
        prune = _prune_now(step, self.begin_step, self.end_step, self.frequency)
        return prune, self.target_sparsity


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity rising from ``initial_sparsity`` to ``final_sparsity`` along a polynomial.

    >>> s = PolynomialDecay(0.5, 0.9, begin_step=0, end_step=100, power=3, frequency=10)
    >>> [round(s(t)[1], 4) for t in (0, 50, 100, 200)]
    [0.5, 0.85, 0.9, 0.9]
    """

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_sparsity(self.initial_sparsity, "initial_sparsity")
        _check_sparsity(self.final_sparsity, "final_sparsity")
        _check_steps(self.begin_step, self.end_step, self.frequency, allow_forever=False)
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}")

    def __call__(self, step: int) -> tuple[bool, float]:
        span = self.end_step - self.begin_step
        # a zero-length ramp jumps straight to the final sparsity (TF-MOT would divide by zero)
        elapsed = 1.0 if span == 0 else (step - self.begin_step) / span
        p = min(1.0, max(0.0, elapsed))
        sparsity = (self.initial_sparsity - self.final_sparsity) * (1 - p) ** self.power
        prune = _prune_now(step, self.begin_step, self.end_step, self.frequency)
        return prune, sparsity + self.final_sparsity


def agp(
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int = 100,
) -> PolynomialDecay:
    """Automated gradual pruning (Zhu & Gupta 2017): a polynomial decay of power 3.

    >>> agp(0.0, 0.8, 0, 100).power
    3.0
    """
    return PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step, 3.0, frequency)


def iterative_targets(final_sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` prune-and-retrain rounds, ending at ``final_sparsity``.

    Each round removes the same fraction of the weights still alive, so the density falls
    geometrically (Han et al. 2015 prune 'iteratively' in this sense).

    >>> [round(s, 3) for s in iterative_targets(0.875, 3)]
    [0.5, 0.75, 0.875]
    """
    _check_sparsity(final_sparsity, "final_sparsity")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    density = 1.0 - final_sparsity
    return [1.0 - density ** ((r + 1) / rounds) for r in range(rounds)]


Schedule = ConstantSparsity | PolynomialDecay


class GradualPruning(MaskEnforcement):
    """A ``fit`` callback: prune on a schedule, and keep pruned weights at zero in between.

    As in TF-MOT, the masks for step ``t`` are computed from the weights before the forward
    pass of step ``t``.

    >>> from prunekit.train import fit
    >>> from prunekit.evaluate import prunable_sparsity
    >>> net = nn.Linear(10, 4)
    >>> prune = GradualPruning(PolynomialDecay(0.2, 0.6, 0, 4, frequency=2))
    >>> _ = fit(net, torch.randn(64, 10), torch.zeros(64, dtype=torch.long), batch_size=8,
    ...         callbacks=[prune], progress=False)
    >>> round(prunable_sparsity(net), 2)
    0.6
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        scope: Scope = "global",
        criterion: str = "magnitude",
        ignore: Collection[str] = (),
    ) -> None:
        super().__init__()
        if criterion == "taylor" and schedule.begin_step == 0:
            raise ValueError(
                "criterion 'taylor' needs the gradient of a previous step: start the schedule "
                "at begin_step >= 1"
            )
        self.schedule = schedule
        self.scope = scope
        self.criterion = criterion
        self.ignore = tuple(ignore)

    def on_step_begin(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        prune, sparsity = self.schedule(step)
        if not prune:
            return
        prune_by_ratio(
            model, sparsity, scope=self.scope, criterion=self.criterion, ignore=self.ignore
        )
        zero_pruned_state(optimizer, model)
