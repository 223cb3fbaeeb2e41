"""Structured width and depth pruning of HF transformers: heads, FFN units, whole layers.

``shrink(model, batches, heads=1/3, ffn=0.5, layers=2)`` scores everything on the dense model
(:mod:`prunekit.hf.importance`), then removes, in each layer, the lowest-scoring heads and FFN
units, then the layers whose output differs least from their input. Separate amounts per kind,
in one call.

- **Uniform** (default): every layer loses the same number of heads and units, so the result
  is a standard model of the same HF class with a rewritten config (:mod:`prunekit.hf.rewrite`).
- **GQA**: query heads are removed in equal numbers from every KV group (so ``num_key_value_groups``
  stays an integer); when that would empty the groups, whole KV groups go instead (a group's score
  is its heads' sum). The fraction actually removed is reported, and logged when it differs from
  the one asked for.
- ``uniform=False``: FFN units (and heads of non-GQA models) are ranked across all layers on
  scores normalised by each layer's mean, each layer keeping at least one; the config cannot
  describe that, so save with :func:`prunekit.save`.

>>> import torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> model = LlamaForCausalLM(LlamaConfig(hidden_size=48, intermediate_size=64,
...     num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, vocab_size=50)).eval()
>>> batches = [{"input_ids": torch.randint(0, 50, (2, 8))}]
>>> report = shrink(model, batches, heads=1/3, ffn=0.5, layers=1, criterion="activation")
>>> c = model.config
>>> c.num_attention_heads, c.num_key_value_heads, c.intermediate_size, c.num_hidden_layers
(4, 2, 32, 2)
>>> report.config_describes_model
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import decoder_layers, ffn_width, head_layout
from prunekit.hf.importance import UNIT_CRITERIA, layer_distances, unit_scores
from prunekit.hf.layerwise import Batch
from prunekit.hf.rewrite import keep_ffn_units, keep_heads, keep_layers, layer_shapes, sync_config
from prunekit.modes import eval_mode

log = logging.getLogger(__name__)


@dataclass
class ShrinkReport:
    """What :func:`shrink` removed, and whether the config alone now describes the model."""

    heads_removed: int = 0
    heads_total: int = 0
    ffn_removed: int = 0
    ffn_total: int = 0
    layers_removed: list[int] = field(default_factory=list)
    layer_distances: list[float] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    config_describes_model: bool = True
    shapes: list[dict[str, int]] = field(default_factory=list)


def check_amounts(heads: float, ffn: float, layers: int, criterion: str) -> None:
    """An error naming the bad option, before any work."""
    for name, value in (("heads", heads), ("ffn", ffn)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name} is a fraction in [0, 1), got {value}")
    if layers < 0:
        raise ValueError(f"--layers is a number of layers >= 0, got {layers}")
    if criterion not in UNIT_CRITERIA:
        raise ValueError(f"criterion {criterion!r} is not one of {UNIT_CRITERIA}")


def _best(scores: Tensor, fraction: float) -> list[int]:
    """Indices of the best ``1 − fraction`` of ``scores`` (at least one)."""
    keep = max(1, len(scores) - round(len(scores) * fraction))
    return scores.topk(keep).indices.tolist()


def _gqa_plan(scores: Tensor, query_heads: int, kv_heads: int, fraction: float) -> list[int]:
    """Query heads to keep in one GQA layer: equal counts per group, or whole groups."""
    group = query_heads // kv_heads
    if round(group * fraction) < group:  # every group keeps some of its query heads
        return [g * group + i for g in range(kv_heads)
                for i in _best(scores[g * group : (g + 1) * group], fraction)]  # fmt: skip
    groups = kv_heads - round(kv_heads * fraction)
    if groups < 1:
        raise ValueError(f"removing {fraction:.0%} of the heads would remove every KV group")
    kept_groups = scores.view(kv_heads, group).sum(1).topk(groups).indices
    return [int(g) * group + i for g in kept_groups for i in range(group)]


def _plan_heads(
    model: nn.Module, scores: list[Tensor], fraction: float, uniform: bool
) -> list[list[int]]:
    layouts = [head_layout(model, i) for i in range(len(scores))]
    gqa = layouts[0].group_size > 1
    if gqa and not uniform:
        raise ValueError("non-uniform head pruning of a GQA model is not supported; use uniform")
    if gqa:
        return [_gqa_plan(s, lay.query_heads, lay.kv_heads, fraction)
                for s, lay in zip(scores, layouts)]  # fmt: skip
    return [_best(s, fraction) for s in scores] if uniform else _global_keep(scores, fraction)


def _global_keep(scores: list[Tensor], fraction: float) -> list[list[int]]:
    """Rank units of all layers together on per-layer-normalised scores; each layer keeps one."""
    normalised = [s / s.mean().clamp_min(1e-12) for s in scores]
    flat = torch.cat(normalised)
    drop = round(flat.numel() * fraction)
    order = flat.argsort()
    dropped = torch.zeros_like(flat, dtype=torch.bool)
    dropped[order[:drop]] = True
    keeps, offset = [], 0
    for s in normalised:
        mask = ~dropped[offset : offset + len(s)]
        if not mask.any():
            mask[s.argmax()] = True
        keeps.append(torch.nonzero(mask).flatten().tolist())
        offset += len(s)
    return keeps


def _ffn_plan(scores: list[Tensor], fraction: float, uniform: bool) -> list[list[int]]:
    return [_best(s, fraction) for s in scores] if uniform else _global_keep(scores, fraction)


def shrink(
    model: nn.Module,
    batches: Sequence[Batch],
    *,
    heads: float = 0.0,
    ffn: float = 0.0,
    layers: int = 0,
    criterion: str = "activation",
    uniform: bool = True,
) -> ShrinkReport:
    """Remove ``heads`` and ``ffn`` fractions of every layer's heads/FFN units and the ``layers``
    least important layers from ``model``, in place; see the module docs."""
    check_amounts(heads, ffn, layers, criterion)
    count = len(decoder_layers(model))
    if not 0 <= layers < count:
        raise ValueError(f"--layers must be in [0, {count - 1}] for this {count}-layer model")
    with eval_mode(model):  # removal rewrites layers; each position gets its mode back
        report = ShrinkReport(params_before=sum(p.numel() for p in model.parameters()))
        report.heads_total = sum(head_layout(model, i).query_heads for i in range(count))
        report.ffn_total = sum(ffn_width(model, i) for i in range(count))
        scores = unit_scores(model, batches, criterion) if heads or ffn else None
        if layers:
            report.layer_distances = layer_distances(model, batches)
        if heads:
            for index, keep in enumerate(_plan_heads(model, scores.heads, heads, uniform)):
                keep_heads(model, index, keep)
        if ffn:
            for index, keep in enumerate(_ffn_plan(scores.ffn, ffn, uniform)):
                keep_ffn_units(model, index, torch.tensor(keep))
        width = layer_shapes(model)  # heads and units removed are counted before any layer goes
        report.heads_removed = report.heads_total - sum(s["query_heads"] for s in width)
        report.ffn_removed = report.ffn_total - sum(s["ffn"] for s in width)
        if layers:
            ranked = sorted(range(count), key=lambda i: report.layer_distances[i])
            report.layers_removed = sorted(ranked[:layers])
            keep_layers(model, [i for i in range(count) if i not in report.layers_removed])
        report.shapes = layer_shapes(model)
        report.config_describes_model = sync_config(model)
        report.params_after = sum(p.numel() for p in model.parameters())
        if heads and not math.isclose(report.heads_removed / report.heads_total, heads, abs_tol=0.05):
            log.warning("removed %d of %d heads (%.0f%%), the nearest GQA allows to %.0f%%",
                        report.heads_removed, report.heads_total,
                        100 * report.heads_removed / report.heads_total, 100 * heads)  # fmt: skip
    return report
