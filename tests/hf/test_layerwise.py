"""Running layers one at a time from the caught inputs reproduces the whole model."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.architectures import decoder_layers
from prunekit.hf.layerwise import capture_layer_inputs, run_layer


@pytest.mark.parametrize("family", ["llama", "bert", "gpt2"])
def test_layer_by_layer_equals_the_full_forward(tiny, ids, family):
    model = getattr(tiny, family)()
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding: the caught kwargs must carry the model's own mask
    batches = [{"input_ids": ids, "attention_mask": mask}, {"input_ids": ids[:1, :5]}]
    inputs = capture_layer_inputs(model, batches)
    for layer in decoder_layers(model):
        inputs = inputs.with_hidden(run_layer(layer, inputs))
    for batch, hidden in zip(batches, inputs.hidden):
        out = model.base_model(**batch, output_hidden_states=True)
        final_norm = {"llama": "norm", "gpt2": "ln_f", "bert": ""}[family]
        final = model.base_model.get_submodule(final_norm)(hidden) if final_norm else hidden
        torch.testing.assert_close(final, out.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_the_forward_stops_at_the_first_layer(tiny, ids):
    model = tiny.llama()
    calls = []
    model.model.layers[1].register_forward_pre_hook(lambda *_: calls.append(1))
    capture_layer_inputs(model, [{"input_ids": ids}])
    assert calls == []
