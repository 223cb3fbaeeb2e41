"""prunekit's own file for HF models: one safetensors file, any shapes, no code run on load.

Why beside ``save_pretrained``: a model pruned non-uniformly (layers of different widths), or a
BERT or GPT-2 with fewer heads (their transformers-5 configs have no field for a head count
that does not divide ``hidden_size`` into the original head size), cannot be described by its
config, so ``from_pretrained`` cannot rebuild it. This file holds the weights (dense, or
bitmask/CSR compressed, checksummed, through :mod:`prunekit.sparse.storage`), the config, the
class name and every layer's shape. Loading builds the class only if it is on
:data:`HF_CLASSES` (looked up by name in ``transformers``, never imported from what the file
says), narrows each layer to its saved shape, and loads the weights. ``prunekit.save`` and
``prunekit.load`` dispatch here for HF models.

>>> import tempfile, torch
>>> from transformers import BertConfig, BertModel
>>> from prunekit.hf.rewrite import keep_heads
>>> model = BertModel(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
...     num_hidden_layers=2, vocab_size=60)).eval()
>>> _ = keep_heads(model, 1, [0, 2])
>>> path = save_hf(model, tempfile.mkdtemp() + "/bert.safetensors")
>>> ids = torch.randint(0, 60, (1, 5))
>>> torch.allclose(load_hf(path)(ids).last_hidden_state, model(ids).last_hidden_state)
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from prunekit.hf.architectures import ARCHITECTURES, HeadLayout, head_layout
from prunekit.hf.rewrite import keep_ffn_units, keep_heads, layer_shapes
from prunekit.sparse.storage import (
    Format,
    StorageError,
    load_state_dict,
    read_metadata,
    save_state_dict,
)

KEY_CLASS = "prunekit.hf.class"
KEY_CONFIG = "prunekit.hf.config"
KEY_SHAPES = "prunekit.hf.shapes"
KEY_TIED = "prunekit.hf.tied"

HF_CLASSES = frozenset({
    "LlamaModel", "LlamaForCausalLM", "MistralModel", "MistralForCausalLM",
    "Qwen2Model", "Qwen2ForCausalLM", "Qwen3Model", "Qwen3ForCausalLM",
    "BertModel", "BertForSequenceClassification", "RobertaModel",
    "GPT2Model", "GPT2LMHeadModel", "ViTModel", "ViTForImageClassification",
})  # fmt: skip
"""The HF classes a prunekit file may name; nothing else is ever built from a file."""


def is_hf_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a prunekit file holding an HF model."""
    return KEY_CLASS in read_metadata(path)


def save_hf(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: Format = "dense",
    values_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (class, config, per-layer shapes, weights) to ``path`` atomically."""
    name = type(model).__name__
    if name not in HF_CLASSES:
        raise ValueError(f"{name} is not one of the HF classes prunekit saves: {sorted(HF_CLASSES)}")
    state, tied, seen = {}, {}, {}
    for key, tensor in model.state_dict().items():
        address = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if address in seen:  # tied weights (embeddings and LM head): stored once
            tied[key] = seen[address]
        else:
            seen[address] = key
            state[key] = tensor.detach().contiguous()
    metadata = {
        KEY_CLASS: name,
        KEY_CONFIG: model.config.to_json_string(use_diff=False),
        KEY_SHAPES: json.dumps(layer_shapes(model)),
        KEY_TIED: json.dumps(tied),
    }
    return save_state_dict(state, path, format=format, values_dtype=values_dtype, metadata=metadata)


def load_hf(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the model :func:`save_hf` wrote, in eval mode.

    The weights are read (and the file's checksum, which covers the metadata, verified) before
    anything is built, and the model is first built on the meta device and compared with them,
    so a tampered config cannot make loading allocate more than the file holds.
    """
    import transformers

    state = load_state_dict(path)
    metadata = read_metadata(path)
    name = metadata.get(KEY_CLASS)
    if name not in HF_CLASSES:
        raise StorageError(f"{path} names the class {name!r}, which is not on prunekit's allowlist")
    try:
        config_dict = json.loads(metadata[KEY_CONFIG])
        shapes = json.loads(metadata[KEY_SHAPES])
        tied = json.loads(metadata.get(KEY_TIED, "{}"))
    except (KeyError, json.JSONDecodeError) as err:
        raise StorageError(f"{path}: the HF metadata is damaged ({err})") from err
    model_type = config_dict.pop("model_type", None)
    if model_type not in ARCHITECTURES:
        raise StorageError(f"{path}: model_type {model_type!r} has no prunekit.hf adapter")
    config = transformers.AutoConfig.for_model(model_type, **config_dict)
    for alias, source in tied.items():
        state[alias] = state[source]
    with torch.device("meta"):
        probe = getattr(transformers, name)(config)
    _narrow_all(probe, shapes)  # on the meta weights; the indices stay on the CPU
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or sorted(
            k for k in expected if expected[k] != found[k])
        raise StorageError(f"{path}: the described model does not match its weights ({wrong[:3]})")
    model = getattr(transformers, name)(config)
    _narrow_all(model, shapes)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _narrow_all(model: nn.Module, shapes: list[dict[str, int]]) -> None:
    for index, shape in enumerate(shapes):
        _narrow_to(model, index, shape)


def _narrow_to(model: nn.Module, index: int, shape: dict[str, int]) -> None:
    layout = head_layout(model, index)
    wanted = HeadLayout(shape["query_heads"], shape["kv_heads"], layout.head_dim)
    if wanted != layout:
        per_group = wanted.query_heads // wanted.kv_heads
        keep_heads(model, index, [g * layout.group_size + j
                                  for g in range(wanted.kv_heads) for j in range(per_group)])  # fmt: skip
    if shape["ffn"] != layer_shapes(model)[index]["ffn"]:
        keep_ffn_units(model, index, torch.arange(shape["ffn"]))
