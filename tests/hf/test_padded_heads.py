"""The head-padded twin: a stock config, equal outputs, refused where it cannot hold."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.padded_heads import padded_twin
from prunekit.hf.rewrite import keep_ffn_units, keep_heads


def test_twin_of_a_pruned_bert_equals_it_with_padding_and_a_stock_config(tiny, ids):
    transformers = pytest.importorskip("transformers")
    bert = tiny.bert(layers=2)
    for layer in range(2):
        keep_heads(bert, layer, [1, 2])
        keep_ffn_units(bert, layer, torch.arange(0, 64, 2))
    twin = padded_twin(bert)
    assert twin is not None and type(twin) is transformers.BertModel
    rebuilt = transformers.BertModel(twin.config).eval()
    rebuilt.load_state_dict(twin.state_dict(), strict=True)  # the config alone describes it
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   bert(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   atol=1e-5, rtol=1e-4)
    q = twin.encoder.layer[0].attention.self.query.weight.view(2, 16, -1)
    assert torch.all(q[:, 8:] == 0)  # each head's extra dimensions are zero
    assert twin.encoder.layer[0].intermediate.dense.out_features == 32


def test_no_twin_where_it_cannot_hold(tiny, ids):
    bert = tiny.bert(layers=2)
    for layer in range(2):
        keep_heads(bert, layer, [0, 1, 2])  # 3 heads do not divide 32
    assert padded_twin(bert) is None
    uneven = tiny.bert(layers=2)
    keep_heads(uneven, 0, [0, 1])
    assert padded_twin(uneven) is None  # layers differ
    assert padded_twin(tiny.llama()) is None  # Llama's config has head_dim: no twin needed
