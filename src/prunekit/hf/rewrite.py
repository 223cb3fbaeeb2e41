"""Make an HF transformer physically smaller: fewer heads, FFN units or layers, config to match.

Every function here keeps the model an ordinary instance of its own HF class: Linear layers
are replaced by smaller ones holding the kept rows/columns, the attention modules' head
counters are updated, and :func:`sync_config` rewrites ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``, ``intermediate_size`` and ``num_hidden_layers`` (or the
family's names for them) when every layer has the same shape, so ``from_pretrained`` builds
exactly this model. Where layers differ (non-uniform pruning), or where the family's config
cannot express narrower heads, :func:`layer_shapes` records each layer's shape for
:mod:`prunekit.hf.saving`.

>>> import torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, vocab_size=50))
>>> keep_ffn_units(model, 0, torch.arange(32)); keep_ffn_units(model, 1, torch.arange(32))
>>> keep_ffn_units(model, 2, torch.arange(32)); sync_config(model)
True
>>> model.config.intermediate_size
32
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import (
    HeadLayout,
    architecture_of,
    decoder_layers,
    ffn_width,
    head_layout,
    is_conv1d,
)


def narrow(module: nn.Module, *, rows: Tensor | None = None, columns: Tensor | None = None) -> nn.Module:
    """A new Linear (or HF Conv1D) keeping output ``rows`` and input ``columns`` of ``module``."""
    weight = module.weight.detach()
    if is_conv1d(module):  # stored (in, out)
        weight = weight.T
    if rows is not None:
        weight = weight.index_select(0, rows)
    if columns is not None:
        weight = weight.index_select(1, columns)
    bias = module.bias.detach() if module.bias is not None else None
    if bias is not None and rows is not None:
        bias = bias.index_select(0, rows)
    out_features, in_features = weight.shape
    if is_conv1d(module):
        smaller = type(module)(out_features, in_features)
        smaller.weight = nn.Parameter(weight.T.contiguous())
        smaller.bias = nn.Parameter(bias.clone())
        return smaller.to(module.weight.device)
    smaller = nn.Linear(in_features, out_features, bias=bias is not None,
                        device=weight.device, dtype=weight.dtype)  # fmt: skip
    with torch.no_grad():
        smaller.weight.copy_(weight)
        if bias is not None:
            smaller.bias.copy_(bias)
    return smaller


def _replace(block: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(block.get_submodule(parent) if parent else block, name, module)


def _unit_indices(heads: Tensor, width: int) -> Tensor:
    return (heads.unsqueeze(1) * width + torch.arange(width)).flatten()


def keep_heads(model: nn.Module, layer: int, query_heads: Sequence[int]) -> HeadLayout:
    """Keep only ``query_heads`` (indices into the layer's current heads) in ``layer``.

    GQA: the kept heads must leave the same number of query heads in every KV group that keeps
    any; KV heads left with no query head are removed with their k/v rows. Returns the new layout.
    """
    arch = architecture_of(model)
    block = decoder_layers(model)[layer]
    layout = head_layout(model, layer)
    kept = torch.tensor(sorted({int(h) for h in query_heads}), dtype=torch.long)
    if kept.numel() == 0 or int(kept.max()) >= layout.query_heads or int(kept.min()) < 0:
        raise ValueError(f"layer {layer}: keep at least one of heads 0..{layout.query_heads - 1}")
    groups = kept // layout.group_size
    kv_kept, per_group = torch.unique(groups, return_counts=True)
    if per_group.unique().numel() != 1:
        raise ValueError(
            f"layer {layer}: KV groups would keep different numbers of query heads "
            f"({per_group.tolist()}); GQA needs the same count in every group"
        )
    d = layout.head_dim
    q_rows = _unit_indices(kept, d)
    kv_rows = _unit_indices(kv_kept, d)
    if arch.fused_qkv:
        width = layout.query_heads * d
        fused = torch.cat([q_rows, kv_rows + width, kv_rows + 2 * width])
        _replace(block, arch.query, narrow(block.get_submodule(arch.query), rows=fused))
    else:
        _replace(block, arch.query, narrow(block.get_submodule(arch.query), rows=q_rows))
        _replace(block, arch.key, narrow(block.get_submodule(arch.key), rows=kv_rows))
        _replace(block, arch.value, narrow(block.get_submodule(arch.value), rows=kv_rows))
    _replace(block, arch.output, narrow(block.get_submodule(arch.output), columns=q_rows))
    new = HeadLayout(int(kept.numel()), int(kv_kept.numel()), d)
    arch.set_heads(block.get_submodule(arch.attention), new)
    return new


def keep_ffn_units(model: nn.Module, layer: int, units: Tensor) -> None:
    """Keep only FFN ``units`` of ``layer`` (gate and up together in gated MLPs)."""
    arch = architecture_of(model)
    block = decoder_layers(model)[layer]
    units = torch.as_tensor(units, dtype=torch.long).sort().values
    if units.numel() == 0:
        raise ValueError(f"layer {layer}: keep at least one FFN unit")
    for path in arch.ffn_in:
        _replace(block, path, narrow(block.get_submodule(path), rows=units))
    _replace(block, arch.ffn_out, narrow(block.get_submodule(arch.ffn_out), columns=units))


def keep_layers(model: nn.Module, layers: Sequence[int]) -> None:
    """Keep only the transformer layers at ``layers`` (in their order), renumbering them."""
    arch = architecture_of(model)
    stack = decoder_layers(model)
    kept = sorted({int(i) for i in layers})
    if not kept or kept[-1] >= len(stack) or kept[0] < 0:
        raise ValueError(f"keep at least one of layers 0..{len(stack) - 1}")
    if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("removing layers would change this GPT-2's per-layer attention scaling")
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types is not None:
        model.config.layer_types = [layer_types[i] for i in kept]
    new_stack = nn.ModuleList([stack[i] for i in kept])
    for index, block in enumerate(new_stack):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    parent, _, name = arch.layers.rpartition(".")
    setattr(model.base_model.get_submodule(parent) if parent else model.base_model, name, new_stack)
    setattr(model.config, arch.layers_field, len(kept))


def layer_shapes(model: nn.Module) -> list[dict[str, int]]:
    """Each layer's query heads, KV heads and FFN width, as its weights are now."""
    shapes = []
    for index in range(len(decoder_layers(model))):
        layout = head_layout(model, index)
        shapes.append({"query_heads": layout.query_heads, "kv_heads": layout.kv_heads,
                       "ffn": ffn_width(model, index)})  # fmt: skip
    return shapes


def config_describes(model: nn.Module) -> bool:
    """True when ``from_pretrained`` of the config builds exactly the model's shapes."""
    arch = architecture_of(model)
    config = model.config
    shapes = layer_shapes(model)
    if any(shape != shapes[0] for shape in shapes):
        return False
    expected_heads = getattr(config, arch.heads_field)
    expected_kv = getattr(config, arch.kv_heads_field) if arch.kv_heads_field else expected_heads
    ffn = getattr(config, arch.ffn_field) or 4 * config.hidden_size  # GPT-2: n_inner None = 4·E
    return (shapes[0]["query_heads"], shapes[0]["kv_heads"], shapes[0]["ffn"]) == (
        expected_heads, expected_kv, ffn) and len(shapes) == getattr(config, arch.layers_field)


def sync_config(model: nn.Module) -> bool:
    """Rewrite the config to the model's shapes where the family's config can express them.

    Returns whether the config now describes the model exactly (False: layers differ, or the
    config has no field for narrower heads — save with :func:`prunekit.save` then).
    """
    arch = architecture_of(model)
    config = model.config
    shapes = layer_shapes(model)
    setattr(config, arch.layers_field, len(shapes))
    if any(shape != shapes[0] for shape in shapes):
        return False
    setattr(config, arch.ffn_field, shapes[0]["ffn"])
    layout = head_layout(model, 0)
    if arch.config_heads:
        head_dim = layout.head_dim
        setattr(config, arch.heads_field, layout.query_heads)
        if arch.kv_heads_field:
            setattr(config, arch.kv_heads_field, layout.kv_heads)
        if arch.head_dim_field:
            setattr(config, arch.head_dim_field, head_dim)
    return config_describes(model)
