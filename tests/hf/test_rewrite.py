"""Removing heads, FFN units and layers gives exactly the outputs of zeroing them first."""

from __future__ import annotations

import copy

import pytest
import torch

from prunekit.hf.architectures import decoder_layers, head_layout, weight_rows
from prunekit.hf.rewrite import (
    config_describes,
    keep_ffn_units,
    keep_heads,
    keep_layers,
    layer_shapes,
    sync_config,
)


def _out(model, ids):
    result = model(input_ids=ids) if not hasattr(model.config, "image_size") else model(ids)
    return result.logits if hasattr(result, "logits") else result.last_hidden_state


def _zero_head_columns(model, layer, heads, arch_output):
    """Reference: the head's contribution is cut where it enters the output projection."""
    layout = head_layout(model, layer)
    rows = weight_rows(decoder_layers(model)[layer].get_submodule(arch_output))
    with torch.no_grad():
        for h in heads:
            rows[:, h * layout.head_dim : (h + 1) * layout.head_dim] = 0


@pytest.mark.parametrize("family", ["llama", "bert", "gpt2"])
def test_removing_heads_equals_zeroing_them(tiny, ids, family):
    model = getattr(tiny, family)()
    from prunekit.hf.architectures import architecture_of

    arch = architecture_of(model)
    layout = head_layout(model, 1)
    # llama: 6 query heads in 2 KV groups of 3; keep heads 0,2 of group 0 and 3,5 of group 1
    keep = [0, 2, 3, 5] if family == "llama" else [0, 2]
    dropped = [h for h in range(layout.query_heads) if h not in keep]
    reference = copy.deepcopy(model)
    _zero_head_columns(reference, 1, dropped, arch.output)
    new = keep_heads(model, 1, keep)
    assert new.query_heads == len(keep)
    torch.testing.assert_close(_out(model, ids), _out(reference, ids), rtol=1e-5, atol=1e-5)


def test_removing_a_whole_kv_group(tiny, ids):
    model = tiny.llama()
    reference = copy.deepcopy(model)
    _zero_head_columns(reference, 0, [3, 4, 5], "self_attn.o_proj")
    layout = keep_heads(model, 0, [0, 1, 2])
    assert (layout.query_heads, layout.kv_heads) == (3, 1)
    assert model.model.layers[0].self_attn.k_proj.out_features == 8
    torch.testing.assert_close(_out(model, ids), _out(reference, ids), rtol=1e-5, atol=1e-5)


def test_uneven_kv_groups_are_refused(tiny):
    model = tiny.llama()
    with pytest.raises(ValueError, match="same count in every group"):
        keep_heads(model, 0, [0, 1, 3])


def test_vit_heads_and_ffn(tiny):
    model = tiny.vit()
    pixels = torch.randn(2, 3, 16, 16)
    reference = copy.deepcopy(model)
    _zero_head_columns(reference, 0, [1], "attention.o_proj")
    with torch.no_grad():
        reference.layers[1].mlp.fc2.weight[:, 10:] = 0
    keep_heads(model, 0, [0, 2, 3])
    keep_ffn_units(model, 1, torch.arange(10))
    torch.testing.assert_close(_out(model, pixels), _out(reference, pixels), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "bert", "gpt2"])
def test_removing_ffn_units_equals_zeroing_them(tiny, ids, family):
    model = getattr(tiny, family)()
    from prunekit.hf.architectures import architecture_of

    arch = architecture_of(model)
    keep = torch.tensor([1, 5, 7, 20, 33, 63])
    reference = copy.deepcopy(model)
    drop = torch.ones(64, dtype=torch.bool)
    drop[keep] = False
    with torch.no_grad():
        weight_rows(decoder_layers(reference)[0].get_submodule(arch.ffn_out))[:, drop] = 0
    keep_ffn_units(model, 0, keep)
    assert layer_shapes(model)[0]["ffn"] == 6
    torch.testing.assert_close(_out(model, ids), _out(reference, ids), rtol=1e-5, atol=1e-5)


def test_removing_a_layer_equals_zeroing_its_residual_branches(tiny, ids):
    """Pre-norm Llama: a layer whose o_proj and down_proj are zero is the identity."""
    model = tiny.llama()
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.model.layers[1].self_attn.o_proj.weight.zero_()
        reference.model.layers[1].mlp.down_proj.weight.zero_()
    keep_layers(model, [0, 2])
    assert model.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    torch.testing.assert_close(_out(model, ids), _out(reference, ids), rtol=1e-5, atol=1e-5)
    generated = model.generate(ids[:1, :4], max_new_tokens=3, do_sample=False)  # KV cache works
    assert generated.shape == (1, 7)


def test_removing_a_bert_layer_skips_it(tiny, ids):
    model = tiny.bert(layers=3)
    reference = copy.deepcopy(model)
    del reference.encoder.layer[1]
    keep_layers(model, [0, 2])
    torch.testing.assert_close(_out(model, ids), _out(reference, ids), rtol=1e-5, atol=1e-5)


def test_uniform_llama_config_rewrite_loads_with_from_pretrained(tiny, ids, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny.llama()
    for layer in range(3):
        keep_heads(model, layer, [0, 1, 3, 4])
        keep_ffn_units(model, layer, torch.arange(0, 64, 2))
    keep_layers(model, [0, 2])
    assert sync_config(model)
    assert (model.config.num_attention_heads, model.config.num_key_value_heads,
            model.config.head_dim, model.config.intermediate_size,
            model.config.num_hidden_layers) == (4, 2, 8, 32, 2)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_out(loaded, ids), _out(model, ids))


def test_bert_heads_cannot_be_described_by_its_config(tiny):
    model = tiny.bert()
    keep_ffn_units(model, 0, torch.arange(32))
    keep_ffn_units(model, 1, torch.arange(32))
    assert sync_config(model)  # FFN width is a config field
    keep_heads(model, 0, [0, 1, 2])
    keep_heads(model, 1, [0, 1, 2])
    assert not sync_config(model)  # transformers 5 has no field for 3 heads of 8 in 32 dims
    assert not config_describes(model)


def test_gpt2_ffn_config_rewrite_loads(tiny, ids, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny.gpt2()
    for layer in range(2):
        keep_ffn_units(model, layer, torch.arange(16))
    assert sync_config(model) and model.config.n_inner == 16
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_out(loaded, ids), _out(model, ids))
