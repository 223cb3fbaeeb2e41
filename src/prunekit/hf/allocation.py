"""Per-layer sparsity: uniform, or outlier-weighted as OWL does.

Why: LLM layers are not equally prunable. OWL (Yin et al. 2024) observes that the layers with
the most *outlier* activations — weights whose Wanda score ``|W|·‖X‖`` exceeds ``threshold``
times their layer's mean — are the ones that lose most when pruned, and gives them a lower
sparsity, the others a higher one, keeping the average at the target. Here a layer's sparsity
is ``target + 2·strength·(mean(d) − d_l)`` with ``d_l`` its outlier ratio scaled to [0, 1], so
the sparsities stay within ``target ± 2·strength`` and average exactly ``target`` (layers are equal in
size in these models, so the model's sparsity is the target too).

>>> [round(s, 3) for s in owl_sparsities([0.01, 0.02, 0.03], 0.5, strength=0.08)]
[0.58, 0.5, 0.42]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ALLOCATIONS = ("uniform", "owl")


def outlier_ratio(scores: Sequence[Tensor], threshold: float = 5.0) -> float:
    """Fraction of all of a layer's scores above ``threshold`` × their mean."""
    flat = torch.cat([s.flatten() for s in scores])
    return float((flat > threshold * flat.mean()).float().mean())


def owl_sparsities(ratios: Sequence[float], target: float, *, strength: float = 0.08) -> list[float]:
    """Sparsity per layer from each layer's outlier ratio (more outliers → pruned less)."""
    room = min(target, 1.0 - target) / 2.0
    if not 0.0 <= strength < room or not ratios:
        raise ValueError(
            f"OWL strength {strength} must be in [0, {room:.3f}) (half of min(sparsity, "
            "1 - sparsity)) so that every layer's sparsity stays in [0, 1)"
        )
    low, high = min(ratios), max(ratios)
    if high == low:
        return [target] * len(ratios)
    scaled = [(r - low) / (high - low) for r in ratios]
    mean = sum(scaled) / len(scaled)
    return [target + 2.0 * strength * (mean - d) for d in scaled]
