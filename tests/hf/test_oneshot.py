"""One-shot pruning of whole tiny transformers: exact sparsity, N:M, OWL, sequential calibration."""

from __future__ import annotations

import copy

import pytest
import torch

from prunekit.hf.architectures import decoder_layers, linear_layers, weight_rows
from prunekit.hf.oneshot import prune_oneshot
from prunekit.sparse.nm import is_nm_sparse


def _batches(ids):
    return [{"input_ids": ids}, {"input_ids": ids.flip(0)}]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_every_layer_weight_is_exactly_half_zero(tiny, ids, method):
    model = tiny.llama()
    embeddings = model.model.embed_tokens.weight.clone()
    report = prune_oneshot(model, _batches(ids), method=method, sparsity=0.5, progress=False)
    assert report.sparsity == 0.5
    for layer in decoder_layers(model):
        for module in linear_layers(layer).values():
            assert float((weight_rows(module) == 0).float().mean()) == 0.5
    assert torch.equal(model.model.embed_tokens.weight, embeddings)  # kept dense, still tied
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_nm_on_every_layer(tiny, ids, family):
    model = getattr(tiny, family)()
    prune_oneshot(model, _batches(ids), method="sparsegpt", nm=(2, 4), progress=False)
    for layer in decoder_layers(model):
        for module in linear_layers(layer).values():
            assert is_nm_sparse(weight_rows(module), 2, 4)


def test_sparsegpt_keeps_the_model_closest_to_dense(tiny, ids):
    dense = tiny.llama()
    logits = dense(ids).logits.detach()
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = copy.deepcopy(dense)
        prune_oneshot(model, _batches(ids), method=method, sparsity=0.6, progress=False)
        errors[method] = float((model(ids).logits.detach() - logits).square().mean())
    assert errors["sparsegpt"] < errors["magnitude"], errors


def test_layers_calibrate_on_the_pruned_outputs_before_them(tiny, ids, monkeypatch):
    """The second layer's statistics must come from the first layer *after* it was pruned."""
    from prunekit.hf import oneshot as module

    seen = []
    original = module._gather

    def spy(layer, inputs, hessian):
        seen.append(inputs.hidden[0].clone())
        return original(layer, inputs, hessian)

    monkeypatch.setattr(module, "_gather", spy)
    model = tiny.llama()
    dense = copy.deepcopy(model)
    prune_oneshot(model, [{"input_ids": ids}], method="wanda", sparsity=0.5, progress=False)
    pruned_first = model.model.layers[0]
    from prunekit.hf.layerwise import capture_layer_inputs, run_layer

    caught = capture_layer_inputs(dense, [{"input_ids": ids}])
    torch.testing.assert_close(seen[1], run_layer(pruned_first, caught)[0])
    assert not torch.allclose(seen[1], run_layer(dense.model.layers[0], caught)[0])


def test_owl_varies_sparsity_and_keeps_the_average(tiny, ids):
    model = tiny.llama(layers=4)
    report = prune_oneshot(model, _batches(ids), method="wanda", sparsity=0.5, allocation="owl",
                           owl_strength=0.1, progress=False)
    assert len({round(t, 6) for t in report.layer_targets}) > 1
    assert sum(report.layer_targets) / 4 == pytest.approx(0.5)
    assert report.sparsity == pytest.approx(0.5, abs=0.01)


def test_owl_with_nm_is_refused(tiny, ids):
    with pytest.raises(ValueError, match="N:M"):
        prune_oneshot(tiny.llama(), _batches(ids), method="wanda", nm=(2, 4), allocation="owl",
                      progress=False)


def test_unknown_method_is_refused(tiny, ids):
    with pytest.raises(ValueError, match="method"):
        prune_oneshot(tiny.llama(), _batches(ids), method="obs", sparsity=0.5, progress=False)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_statistics_shared_between_projections_equal_each_ones_own_inputs(tiny, ids, family):
    """q/k/v (and gate/up) share one computed Gram matrix; each must still equal XᵀX of the
    inputs that Linear saw — and o_proj/down_proj, fed other tensors, their own."""
    from prunekit.hf import oneshot as module
    from prunekit.hf.layerwise import capture_layer_inputs

    model = getattr(tiny, family)()
    batches = _batches(ids)
    layer = decoder_layers(model)[0]
    seen = {name: [] for name in linear_layers(layer)}
    handles = [m.register_forward_pre_hook(lambda _m, a, n=name: seen[n].append(a[0].detach()))
               for name, m in linear_layers(layer).items()]
    stats, _ = module._gather(layer, capture_layer_inputs(model, batches), hessian=True)
    for handle in handles:
        handle.remove()
    for name, inputs in seen.items():
        x = torch.cat([t.reshape(-1, t.shape[-1]) for t in inputs]).double()
        torch.testing.assert_close(stats[name].hessian(), 2 / x.shape[0] * x.T @ x)
        torch.testing.assert_close(stats[name].input_norms(), x.square().sum(0).sqrt())
