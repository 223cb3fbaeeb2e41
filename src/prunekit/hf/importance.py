"""How much each attention head, FFN unit and whole layer of an HF transformer matters.

Unit criteria (:data:`UNIT_CRITERIA`), scored on the dense model:

- ``magnitude`` — the squared norm of every weight the unit owns (a head's q rows and its
  o_proj columns; an FFN unit's gate/up rows and its down_proj column). Needs no data.
- ``activation`` — the unit's expected squared contribution to the layer output,
  ``E‖x_j‖² · ‖W_out[:, j]‖²``, with ``x_j`` the unit's activation entering the output
  projection on the calibration text (a unit that is large but never fires scores low).
- ``taylor`` — first-order estimate of the loss change when the unit is removed,
  ``(Σ_tokens ∂L/∂x_j · x_j)²`` summed over batches (Molchanov et al. 2019), with ``L`` the
  language-model loss on the calibration text (causal LMs only: an encoder has no loss to take
  without labels).

Layer importance (:func:`layer_distances`): the angular distance ``arccos(cos(h_in, h_out))/π``
between a layer's input and output hidden states, averaged over tokens (Gromov et al. 2024,
ShortGPT's block influence): a layer that barely turns the residual stream does little and is
removed first.

>>> import torch
>>> from transformers import BertConfig, BertModel
>>> model = BertModel(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
...     num_hidden_layers=2, vocab_size=60)).eval()
>>> batches = [{"input_ids": torch.randint(0, 60, (2, 8))}]
>>> scores = unit_scores(model, batches, "activation")
>>> [tuple(s.shape) for s in scores.heads], [tuple(s.shape) for s in scores.ffn]
([(4,), (4,)], [(64,), (64,)])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import architecture_of, decoder_layers, head_layout, weight_rows
from prunekit.hf.layerwise import Batch, forward_kwargs, layer_output

UNIT_CRITERIA = ("magnitude", "activation", "taylor")


@dataclass
class UnitScores:
    """One score per query head and per FFN unit, for every layer (higher = more important)."""

    heads: list[Tensor]
    ffn: list[Tensor]


def _query_rows(model: nn.Module, layer: int) -> Tensor:
    arch = architecture_of(model)
    rows = weight_rows(decoder_layers(model)[layer].get_submodule(arch.query))
    layout = head_layout(model, layer)
    return rows[: layout.query_heads * layout.head_dim]


def _magnitude(model: nn.Module) -> UnitScores:
    arch = architecture_of(model)
    heads, ffn = [], []
    for index, block in enumerate(decoder_layers(model)):
        layout = head_layout(model, index)
        out_cols = weight_rows(block.get_submodule(arch.output)).square().sum(0)
        q_rows = _query_rows(model, index).square().sum(1)
        heads.append((q_rows + out_cols).view(layout.query_heads, -1).sum(1).detach())
        units = weight_rows(block.get_submodule(arch.ffn_out)).square().sum(0)
        for path in arch.ffn_in:
            units = units + weight_rows(block.get_submodule(path)).square().sum(1)
        ffn.append(units.detach())
    return UnitScores(heads, ffn)


class _OutputInputs:
    """Pre-hooks on each layer's two output projections: the inputs they see (the units)."""

    def __init__(self, model: nn.Module, criterion: str) -> None:
        self.arch = architecture_of(model)
        self.criterion = criterion
        self.sums: dict[tuple[int, str], Tensor] = {}
        self.handles = []
        for index, block in enumerate(decoder_layers(model)):
            for kind, path in (("heads", self.arch.output), ("ffn", self.arch.ffn_out)):
                module = block.get_submodule(path)
                self.handles.append(module.register_forward_pre_hook(self._hook(index, kind)))

    def _hook(self, index: int, kind: str):
        def record(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0]
            if self.criterion == "activation":
                self._add(index, kind, x.detach().reshape(-1, x.shape[-1]).square().sum(0))
            elif x.requires_grad:
                x.register_hook(lambda grad: self._add(
                    index, kind, (grad * x.detach()).reshape(-1, x.shape[-1]).sum(0).square()))
        return record

    def _add(self, index: int, kind: str, value: Tensor) -> None:
        key = (index, kind)
        self.sums[key] = self.sums.get(key, 0) + value.detach().double()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def unit_scores(model: nn.Module, batches: Sequence[Batch], criterion: str) -> UnitScores:
    """Score every head and FFN unit of ``model`` by ``criterion`` (see the module docs)."""
    if criterion not in UNIT_CRITERIA:
        raise ValueError(f"criterion {criterion!r} is not one of {UNIT_CRITERIA}")
    if criterion == "magnitude":
        return _magnitude(model)
    arch = architecture_of(model)
    if criterion == "taylor" and not arch.causal:
        raise ValueError(
            "criterion 'taylor' needs a loss, and an encoder has none without labels; use "
            "'activation' or 'magnitude' for encoders"
        )
    recorder = _OutputInputs(model, criterion)
    try:
        for batch in batches:
            if criterion == "activation":
                with torch.no_grad():
                    model(**batch, **forward_kwargs(model))
            else:
                model.zero_grad(set_to_none=True)
                model(**batch, labels=batch["input_ids"], **forward_kwargs(model)).loss.backward()
    finally:
        recorder.remove()
        model.zero_grad(set_to_none=True)
    heads, ffn = [], []
    for index, block in enumerate(decoder_layers(model)):
        layout = head_layout(model, index)
        h, f = recorder.sums[index, "heads"], recorder.sums[index, "ffn"]
        if criterion == "activation":  # E‖x_j‖² · ‖W_out[:, j]‖²
            h = h * weight_rows(block.get_submodule(arch.output)).detach().double().square().sum(0)
            f = f * weight_rows(block.get_submodule(arch.ffn_out)).detach().double().square().sum(0)
        heads.append(h.view(layout.query_heads, -1).sum(1).float())
        ffn.append(f.float())
    return UnitScores(heads, ffn)


@torch.no_grad()
def layer_distances(model: nn.Module, batches: Sequence[Batch]) -> list[float]:
    """Mean angular distance (0 = identity, 1 = reversal) between each layer's input and output."""
    layers = decoder_layers(model)
    totals = [0.0] * len(layers)
    counts = [0] * len(layers)

    def hook(index: int):
        def record(_module: nn.Module, args: tuple, kwargs: dict, result: object) -> None:
            before = args[0] if args else kwargs["hidden_states"]
            after = layer_output(result)
            cos = torch.nn.functional.cosine_similarity(before.double(), after.double(), dim=-1)
            totals[index] += float(torch.arccos(cos.clamp(-1, 1)).sum() / math.pi)
            counts[index] += cos.numel()
        return record

    handles = [
        layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    try:
        for batch in batches:
            model(**batch, **forward_kwargs(model))
    finally:
        for handle in handles:
            handle.remove()
    return [t / max(c, 1) for t, c in zip(totals, counts)]
