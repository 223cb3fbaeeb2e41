"""A stock-config twin of a head-pruned model whose family fixes the head size: heads padded.

Why: BERT computes its head size as ``hidden_size / num_attention_heads``, and transformers 5
removed ``config.pruned_heads``; so no ``BertConfig`` describes 8 heads of 32 in a 384-wide
model (a third of MiniLM's heads removed), and ``AutoModel.from_pretrained`` cannot load the
compact model. But 8 heads of 48 *is* a BertConfig, and a 32-wide head computes the same inside
a 48-wide one when the extra 16 query, key and value dimensions are zero: ``q·k`` gains only
zero terms, the extra context dimensions are zero, and the output projection's columns for
them are zero. The one change is the softmax scale, ``1/√48`` instead of ``1/√32``, undone by
scaling the query rows (and bias) by ``√(48/32)``. The twin is checked, not assumed: built from
its config by the stock class, loaded strictly, it must reproduce the model's outputs.

What it costs, and is reported: the twin's attention projections are full width again (only
the FFN and removed layers stay smaller), so it is the *portable* form; the compact model
(``prunekit.load``, ONNX) is the fast one.

>>> import torch
>>> from transformers import BertConfig, BertModel
>>> from prunekit.hf.rewrite import keep_heads
>>> bert = BertModel(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
...     num_hidden_layers=2, vocab_size=60, max_position_embeddings=32)).eval()
>>> for layer in range(2):
...     _ = keep_heads(bert, layer, [0, 3])
>>> twin = padded_twin(bert)
>>> twin.config.num_attention_heads, twin.encoder.layer[0].attention.self.attention_head_size
(2, 16)
>>> ids = torch.randint(0, 60, (2, 9))
>>> bool(torch.allclose(twin(ids).last_hidden_state, bert(ids).last_hidden_state, atol=1e-5))
True
"""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import architecture_of, decoder_layers, head_layout
from prunekit.hf.rewrite import layer_shapes
from prunekit.modes import eval_mode

log = logging.getLogger(__name__)

PADDED_FAMILIES = ("bert",)


def _pad_rows(tensor: Tensor, heads: int, width: int, padded: int, scale: float) -> Tensor:
    """``(heads·width, …)`` → ``(heads·padded, …)``: each head's rows first, zeros after."""
    grouped = tensor.reshape(heads, width, *tensor.shape[1:]) * scale
    out = tensor.new_zeros(heads, padded, *tensor.shape[1:])
    out[:, :width] = grouped
    return out.reshape(heads * padded, *tensor.shape[1:])


def _pad_columns(weight: Tensor, heads: int, width: int, padded: int) -> Tensor:
    return _pad_rows(weight.T, heads, width, padded, 1.0).T.contiguous()


def _prefix(model: nn.Module) -> str:
    stack = decoder_layers(model)
    return next(name for name, module in model.named_modules() if module is stack)


def _padded_state(model: nn.Module, heads: int, width: int, padded: int) -> dict[str, Tensor]:
    arch = architecture_of(model)
    state = dict(model.state_dict())
    prefix = _prefix(model)
    scale = math.sqrt(padded / width)  # undoes the wider head's 1/√padded softmax scale
    for index in range(len(decoder_layers(model))):
        block = f"{prefix}.{index}."
        for path, factor in ((arch.query, scale), (arch.key, 1.0), (arch.value, 1.0)):
            for kind in ("weight", "bias"):
                key = f"{block}{path}.{kind}"
                if key in state:
                    state[key] = _pad_rows(state[key], heads, width, padded, factor)
        key = f"{block}{arch.output}.weight"
        state[key] = _pad_columns(state[key], heads, width, padded)
    return state


@torch.no_grad()
def _same_outputs(a: nn.Module, b: nn.Module, vocab: int) -> bool:
    ids = torch.randint(1, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    out_a, out_b = a(input_ids=ids, attention_mask=mask), b(input_ids=ids, attention_mask=mask)
    first_a = out_a[0] if isinstance(out_a, tuple) else next(iter(out_a.values()))
    first_b = out_b[0] if isinstance(out_b, tuple) else next(iter(out_b.values()))
    return torch.allclose(first_a, first_b, atol=1e-5, rtol=1e-4)


def padded_twin(model: nn.Module) -> nn.Module | None:
    """The stock-config twin of a uniform, head-pruned ``model`` (BERT family), or None when
    none is needed or possible: another family, layers of different shapes, heads that do not
    divide the hidden size, or a twin that does not reproduce the outputs."""
    arch = architecture_of(model)
    if arch.family not in PADDED_FAMILIES:
        return None
    shapes = layer_shapes(model)
    if any(shape != shapes[0] for shape in shapes):
        return None
    heads, width = shapes[0]["query_heads"], head_layout(model, 0).head_dim
    hidden = int(model.config.hidden_size)
    if hidden % heads or hidden // heads < width:
        return None
    padded = hidden // heads
    config = copy.deepcopy(model.config)
    setattr(config, arch.heads_field, heads)
    setattr(config, arch.ffn_field, shapes[0]["ffn"])
    setattr(config, arch.layers_field, len(shapes))
    twin = type(model)(config).eval()
    twin.load_state_dict(_padded_state(model, heads, width, padded), strict=True)
    with eval_mode(model):  # every submodule's own mode restored after
        same = _same_outputs(model, twin, int(config.vocab_size))
    if not same:
        log.warning("the head-padded twin does not reproduce the model's outputs; not written")
        return None
    return twin
