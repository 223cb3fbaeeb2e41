"""Where heads, KV groups, FFN units and layers live in each Hugging Face architecture.

Why adapters, not tracing: torch.fx cannot trace HF's forward code (dynamic masks, cache
objects, ``**kwargs`` plumbing, data-dependent shapes; ``prune_channels`` on a ``BertModel`` fails
with ``'Proxy' object does not support item assignment``), ``torch.export`` and HF's own fx
tracer break from one transformers release to the next, and an autograd-graph walk sees the
arithmetic but not the *config*: it cannot say that q_proj's 576 outputs are 9 heads of 64 in 3
KV groups, nor which config field must change so that ``from_pretrained`` builds the smaller
model. A small description per architecture knows exactly that, runs on HF classes as they are
(keyword inputs, ``attention_mask``, ``ModelOutput`` returns, tied embeddings, GQA), and makes
the config rewrite exact. A new architecture is one more entry in :data:`ARCHITECTURES`.

>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50))
>>> arch = architecture_of(model)
>>> arch.family, len(decoder_layers(model)), head_layout(model)
('llama', 2, HeadLayout(query_heads=4, kv_heads=2, head_dim=8))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    """The model is not a Hugging Face architecture prunekit.hf knows."""


@dataclass(frozen=True)
class HeadLayout:
    """Attention heads of one layer: ``query_heads`` in ``kv_heads`` groups of ``head_dim``."""

    query_heads: int
    kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.query_heads // self.kv_heads


@dataclass(frozen=True)
class Architecture:
    """One family of HF transformers, described by the paths of its parts.

    Paths are relative to one layer (block); ``layers`` is relative to ``model.base_model``.
    ``fused_qkv``: q, k and v are one layer (GPT-2's ``c_attn``), split in thirds.
    ``ffn_in`` are the layers whose outputs are the FFN units (gate and up for gated MLPs: they
    must lose the same units); ``ffn_out`` consumes them.
    ``config_heads`` is False where the config cannot express heads narrower than
    ``hidden_size / num_attention_heads`` (BERT and GPT-2 in transformers 5): a head-pruned
    model of that family is saved with :func:`prunekit.save` instead of as a plain HF config.
    """

    family: str
    layers: str
    query: str
    key: str
    value: str
    output: str
    ffn_in: tuple[str, ...]
    ffn_out: str
    attention: str
    set_heads: Callable[[nn.Module, HeadLayout], None]
    heads_field: str
    kv_heads_field: str | None
    head_dim_field: str | None
    ffn_field: str
    layers_field: str
    causal: bool
    fused_qkv: bool = False
    config_heads: bool = True


def _set_llama_heads(attention: nn.Module, layout: HeadLayout) -> None:
    attention.num_key_value_groups = layout.group_size
    attention.head_dim = layout.head_dim


def _set_bert_heads(attention: nn.Module, layout: HeadLayout) -> None:
    attention.num_attention_heads = layout.query_heads
    attention.all_head_size = layout.query_heads * layout.head_dim


def _set_vit_heads(attention: nn.Module, layout: HeadLayout) -> None:
    attention.num_attention_heads = layout.query_heads


def _set_gpt2_heads(attention: nn.Module, layout: HeadLayout) -> None:
    attention.num_heads = layout.query_heads
    attention.split_size = layout.query_heads * layout.head_dim


_LLAMA = Architecture(
    family="llama", layers="layers",
    query="self_attn.q_proj", key="self_attn.k_proj", value="self_attn.v_proj",
    output="self_attn.o_proj", attention="self_attn", set_heads=_set_llama_heads,
    ffn_in=("mlp.gate_proj", "mlp.up_proj"), ffn_out="mlp.down_proj",
    heads_field="num_attention_heads", kv_heads_field="num_key_value_heads",
    head_dim_field="head_dim", ffn_field="intermediate_size", layers_field="num_hidden_layers",
    causal=True,
)  # fmt: skip
_BERT = Architecture(
    family="bert", layers="encoder.layer",
    query="attention.self.query", key="attention.self.key", value="attention.self.value",
    output="attention.output.dense", attention="attention.self", set_heads=_set_bert_heads,
    ffn_in=("intermediate.dense",), ffn_out="output.dense",
    heads_field="num_attention_heads", kv_heads_field=None, head_dim_field=None,
    ffn_field="intermediate_size", layers_field="num_hidden_layers", causal=False,
    config_heads=False,
)  # fmt: skip
_VIT = Architecture(
    family="vit", layers="layers",
    query="attention.q_proj", key="attention.k_proj", value="attention.v_proj",
    output="attention.o_proj", attention="attention", set_heads=_set_vit_heads,
    ffn_in=("mlp.fc1",), ffn_out="mlp.fc2",
    heads_field="num_attention_heads", kv_heads_field=None, head_dim_field="head_dim",
    ffn_field="intermediate_size", layers_field="num_hidden_layers", causal=False,
)  # fmt: skip
_GPT2 = Architecture(
    family="gpt2", layers="h",
    query="attn.c_attn", key="attn.c_attn", value="attn.c_attn", output="attn.c_proj",
    attention="attn", set_heads=_set_gpt2_heads,
    ffn_in=("mlp.c_fc",), ffn_out="mlp.c_proj",
    heads_field="n_head", kv_heads_field=None, head_dim_field=None,
    ffn_field="n_inner", layers_field="n_layer", causal=True, fused_qkv=True, config_heads=False,
)  # fmt: skip

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA,
    "bert": _BERT, "roberta": _BERT, "vit": _VIT, "gpt2": _GPT2,
}  # fmt: skip
"""``config.model_type`` → its description. Add an architecture with one line."""


def is_hf_model(model: object) -> bool:
    """True for a Hugging Face ``PreTrainedModel`` (checked without importing transformers).

    >>> is_hf_model(nn.Linear(2, 2))
    False
    """
    return isinstance(model, nn.Module) and any(
        cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers.")
        for cls in type(model).__mro__
    )


def architecture_of(model: nn.Module) -> Architecture:
    """The description of ``model``'s family, or an error naming what is supported."""
    if not is_hf_model(model):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a Hugging Face PreTrainedModel; prunekit.hf works on "
            "transformers models (for other models use prunekit.structured.prune_channels)"
        )
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} ({type(model).__name__}) has no prunekit.hf adapter; "
            f"supported: {sorted(ARCHITECTURES)}. Add one to prunekit.hf.ARCHITECTURES"
        )
    return ARCHITECTURES[model_type]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer layers (blocks), in order."""
    return model.base_model.get_submodule(architecture_of(model).layers)


def head_layout(model: nn.Module, layer: int = 0) -> HeadLayout:
    """Heads of ``layer`` as its weights are now (after pruning they may differ per layer)."""
    arch = architecture_of(model)
    block = decoder_layers(model)[layer]
    head_dim = _head_dim(model, arch)
    query_width = out_features(block.get_submodule(arch.query))
    key_width = out_features(block.get_submodule(arch.key))
    if arch.fused_qkv:
        query_width = key_width = query_width // 3
    return HeadLayout(query_width // head_dim, key_width // head_dim, head_dim)


def _head_dim(model: nn.Module, arch: Architecture) -> int:
    config = model.config
    explicit = getattr(config, arch.head_dim_field, None) if arch.head_dim_field else None
    if explicit:
        return int(explicit)
    # where head_dim is not a field it is fixed by the dense model and never changes
    return int(config.hidden_size) // int(getattr(config, arch.heads_field))


def ffn_width(model: nn.Module, layer: int = 0) -> int:
    """Number of FFN units (intermediate neurons) of ``layer`` as its weights are now."""
    arch = architecture_of(model)
    return out_features(decoder_layers(model)[layer].get_submodule(arch.ffn_in[0]))


def is_conv1d(module: nn.Module) -> bool:
    """HF's ``Conv1D`` (GPT-2): a Linear whose weight is stored transposed, ``(in, out)``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def linear_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Every ``nn.Linear`` and HF ``Conv1D`` in ``module``, by qualified name."""
    return {
        name: child
        for name, child in module.named_modules()
        if isinstance(child, nn.Linear) or is_conv1d(child)
    }


def weight_rows(module: nn.Module) -> torch.Tensor:
    """The weight as ``(out_features, in_features)``; a view, so edits reach the module."""
    return module.weight.T if is_conv1d(module) else module.weight


def out_features(module: nn.Module) -> int:
    return int(weight_rows(module).shape[0])


def structured_pruning_hint(model: object) -> str | None:
    """What to tell a user who hands an HF model to ``prunekit.structured.prune_channels``.

    torch.fx cannot trace HF's forward code, so the graph-based pruner fails on it (or, wrapped,
    finds no unit to remove); the adapters here do the same job. None for other models.

    >>> structured_pruning_hint(nn.Linear(2, 2)) is None
    True
    """
    if not is_hf_model(model):
        return None
    return (
        f"{type(model).__name__} is a Hugging Face model, whose forward code torch.fx cannot "
        "trace; prune it with prunekit.hf.shrink(model, batches, heads=..., ffn=..., layers=...) "
        "(or `prunekit shrink`) for heads/FFN units/layers, and prunekit.hf.prune_oneshot for "
        "unstructured or N:M sparsity"
    )
