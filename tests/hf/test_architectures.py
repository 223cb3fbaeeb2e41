"""Adapters find heads, KV groups, FFN units and layers in HF classes as they are."""

from __future__ import annotations

import pytest
from torch import nn

from prunekit.hf.architectures import (
    UnsupportedModelError,
    architecture_of,
    decoder_layers,
    ffn_width,
    head_layout,
    is_hf_model,
    linear_layers,
    structured_pruning_hint,
)


@pytest.mark.parametrize("family, layout, ffn, layers", [
    ("llama", (6, 2, 8), 64, 3),
    ("bert", (4, 4, 8), 64, 2),
    ("gpt2", (4, 4, 8), 64, 2),
    ("vit", (4, 4, 8), 64, 2),
])
def test_each_family_is_described(tiny, family, layout, ffn, layers):
    model = getattr(tiny, family)()
    arch = architecture_of(model)
    assert arch.family == family
    assert tuple(vars(head_layout(model, 0)).values()) == layout
    assert ffn_width(model, 1) == ffn and len(decoder_layers(model)) == layers
    # every Linear of a layer is one the adapter names (nothing is missed silently)
    named = {arch.query, arch.key, arch.value, arch.output, arch.ffn_out, *arch.ffn_in}
    assert set(linear_layers(decoder_layers(model)[0])) == named


def test_non_hf_and_unknown_models_are_refused_with_the_way_out(tiny):
    assert not is_hf_model(nn.Linear(2, 2))
    with pytest.raises(UnsupportedModelError, match="prune_channels"):
        architecture_of(nn.Linear(2, 2))
    from transformers import T5Config, T5Model

    t5 = T5Model(T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=10))
    with pytest.raises(UnsupportedModelError, match="ARCHITECTURES"):
        architecture_of(t5)


def test_structured_pruning_hint_points_to_prunekit_hf(tiny):
    assert "prunekit.hf.shrink" in structured_pruning_hint(tiny.bert())
    assert structured_pruning_hint(nn.Linear(2, 2)) is None
