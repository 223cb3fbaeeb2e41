"""Head/FFN unit scores and layer distances: checked against what they must say."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.importance import layer_distances, unit_scores


def test_magnitude_scores_are_the_squared_norms_of_what_a_unit_owns(tiny):
    model = tiny.llama()
    scores = unit_scores(model, [], "magnitude")
    mlp = model.model.layers[0].mlp
    expected = (mlp.gate_proj.weight.square().sum(1) + mlp.up_proj.weight.square().sum(1)
                + mlp.down_proj.weight.square().sum(0))
    torch.testing.assert_close(scores.ffn[0], expected)
    attn = model.model.layers[2].self_attn
    head = slice(8, 16)  # query head 1
    expected_head = (attn.q_proj.weight[head].square().sum()
                     + attn.o_proj.weight[:, head].square().sum())
    torch.testing.assert_close(scores.heads[2][1], expected_head)


@pytest.mark.parametrize("criterion", ["activation", "taylor"])
def test_a_silenced_unit_scores_zero(tiny, ids, criterion):
    model = tiny.llama()
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[7] = 0  # unit 7 never fires
        model.model.layers[1].self_attn.o_proj.weight[:, 16:24] = 0  # head 2 reaches nothing
    scores = unit_scores(model, [{"input_ids": ids}], criterion)
    assert float(scores.ffn[1][7]) == 0.0
    assert float(scores.ffn[1].max()) > 0.0
    if criterion == "activation":
        assert float(scores.heads[1][2]) == 0.0
    assert float(scores.heads[1].max()) > 0.0


def test_taylor_needs_a_loss(tiny, ids):
    with pytest.raises(ValueError, match="encoder"):
        unit_scores(tiny.bert(), [{"input_ids": ids}], "taylor")


def test_an_identity_layer_has_zero_distance(tiny, ids):
    model = tiny.llama()
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    distances = layer_distances(model, [{"input_ids": ids}])
    assert distances[1] == pytest.approx(0.0, abs=1e-6)
    assert min(distances[0], distances[2]) > 0.01
