"""Width and depth shrinking in one call: amounts, GQA groups, config, and what is reported."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.shrink import shrink


def test_gqa_heads_go_evenly_from_every_group(tiny, ids):
    model = tiny.llama(heads=6, kv_heads=2)  # 2 groups of 3 query heads
    report = shrink(model, [{"input_ids": ids}], heads=1 / 3, criterion="magnitude")
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (4, 2)
    assert report.heads_removed == 6 and report.config_describes_model


def test_gqa_whole_groups_go_when_groups_would_empty(tiny, ids):
    model = tiny.llama(heads=8, kv_heads=4)  # 4 groups of 2: 75 % leaves no head per group
    report = shrink(model, [{"input_ids": ids}], heads=0.75, criterion="magnitude")
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 1)
    assert report.heads_removed == 18 and report.config_describes_model
    assert model(ids).logits.shape == (2, 12, 64)


def test_identity_layers_are_removed_first(tiny, ids):
    model = tiny.llama(layers=4)
    with torch.no_grad():
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    logits = model(ids).logits.detach()
    report = shrink(model, [{"input_ids": ids}], layers=1)
    assert report.layers_removed == [2]
    torch.testing.assert_close(model(ids).logits.detach(), logits)


def test_non_uniform_ffn_is_reported_as_not_config_loadable(tiny, ids):
    model = tiny.llama()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[:, :48] *= 1e-3  # layer 0: mostly unimportant
    report = shrink(model, [{"input_ids": ids}], ffn=0.5, uniform=False)
    widths = [s["ffn"] for s in report.shapes]
    assert sum(widths) == 96 and len(set(widths)) > 1
    assert not report.config_describes_model


@pytest.mark.parametrize("bad", [{"heads": 1.0}, {"ffn": -0.1}, {"layers": 3}])
def test_impossible_amounts_are_refused(tiny, ids, bad):
    with pytest.raises(ValueError):
        shrink(tiny.llama(), [{"input_ids": ids}], **bad)
