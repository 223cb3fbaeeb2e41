"""Which allocation a step prunes to: the walk's, the uniform ratio's or a blend, chosen by a probe.

Why: the walk (:mod:`.search`) trusts the one-shot sensitivity summed over groups, and that sum
ranks allocations by what one-shot pruning breaks, not by what fine-tuning can mend. Measured on
ResNet-20 / MNIST-5k at a quarter of the MACs, the walk's allocation alone ended 0.5 pt below the
uniform ratio after the same fine-tuning, even with BatchNorm statistics re-estimated. So each
step tries a few allocations at the same estimated cost — the walk's, the uniform ratio's and
evenly spaced blends between them (:func:`~.search.blended_removed`) — prunes a copy of the
current model to each, re-estimates its BatchNorm statistics, trains it for a fraction of an
epoch and scores it by its validation loss (the accuracy of a few hundred validation samples
moves in steps too coarse to order the candidates); the best one is what the step prunes. The probes'
training is then thrown away: the chosen allocation is pruned from the current model and gets
the step's full fine-tuning, so the answer is trained exactly as much as the uniform baseline it
is compared with. This is candidate evaluation in the spirit of EagleEye (Li et al., 2020), which
showed that adaptive-BN scores of pruned candidates track their fine-tuned accuracy; the short
probe training is there to sharpen that ranking, at a few seconds per candidate (not measured
against adaptive BN alone). Over three seeds on LeNet-5 and ResNet-20 the chosen allocations
ended level with the uniform ratio within noise (docs/compress.md), no better.

>>> plans = candidate_plans((4, 0), (2, 2), 3, lambda a: (round(4 - 2 * a), round(2 * a)))
>>> [(c.label, c.removed) for c in plans]
[('walk', (4, 0)), ('blend 0.50', (3, 1)), ('uniform', (2, 2))]
>>> best = choose(plans, lambda removed: -abs(removed[0] - 3))
>>> best.label, [c.score for c in plans]
('blend 0.50', [-1, 0, -1])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Removed = tuple[int, ...]


@dataclass
class Candidate:
    """One allocation a step may prune to: units removed per group, and its probe score."""

    label: str
    removed: Removed
    score: float = float("nan")


def candidate_plans(walk: Removed, uniform: Removed, count: int,
                    blend: Callable[[float], Removed]) -> list[Candidate]:
    """``count`` allocations from the walk's (first) to the uniform one (last), the ones
    between from ``blend(alpha)``; duplicates dropped (the earlier label kept). One candidate
    when ``count`` is 1: the walk's, as the search alone would prune."""
    if count < 1:
        raise ValueError(f"candidates must be >= 1, got {count}")
    if count == 1:
        return [Candidate("walk", walk)]
    plans: list[Candidate] = []
    for alpha in np.linspace(0.0, 1.0, count):
        if alpha == 0.0:
            plan = Candidate("walk", walk)
        elif alpha == 1.0:
            plan = Candidate("uniform", uniform)
        else:
            plan = Candidate(f"blend {alpha:.2f}", blend(float(alpha)))
        if all(plan.removed != seen.removed for seen in plans):
            plans.append(plan)
    return plans


def choose(plans: list[Candidate], probe: Callable[[Removed], float]) -> Candidate:
    """Score every plan with ``probe`` (higher is better) and return the best; ties go to the
    earlier plan (the walk's). A single plan is returned unprobed."""
    if len(plans) == 1:
        return plans[0]
    for plan in plans:
        plan.score = probe(plan.removed)
    return max(plans, key=lambda plan: (plan.score, -plans.index(plan)))


__all__ = ["Candidate", "candidate_plans", "choose"]
