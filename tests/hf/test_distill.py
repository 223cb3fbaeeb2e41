"""Recovery by distillation: it recovers, and zeros from one-shot pruning stay zeros."""

from __future__ import annotations

import copy

import pytest
import torch

from prunekit.hf.architectures import decoder_layers, linear_layers
from prunekit.hf.distill import distill
from prunekit.hf.oneshot import prune_oneshot
from prunekit.masks import has_masks


def test_recovery_after_oneshot_moves_towards_the_teacher_and_keeps_zeros(tiny, ids):
    teacher = tiny.llama()
    student = copy.deepcopy(teacher)
    batches = [{"input_ids": ids}]
    prune_oneshot(student, batches, method="magnitude", sparsity=0.6, progress=False)
    zeros = {n: m.weight == 0 for n, m in linear_layers(decoder_layers(student)).items()}
    before = float((student(ids).logits - teacher(ids).logits).square().mean())
    report = distill(student, teacher, batches, steps=30, lr=3e-3, progress=False)
    after = float((student(ids).logits - teacher(ids).logits).square().mean())
    assert report.final_loss < report.initial_loss and after < before
    for name, module in linear_layers(decoder_layers(student)).items():
        assert torch.equal(module.weight == 0, zeros[name]), name
    assert not has_masks(student)  # masks were training state only
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)


def test_encoder_recovery_on_embeddings(tiny, ids):
    from prunekit.hf.rewrite import keep_ffn_units

    teacher = tiny.bert()
    student = copy.deepcopy(teacher)
    keep_ffn_units(student, 0, torch.arange(8))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    report = distill(student, teacher, [{"input_ids": ids, "attention_mask": mask}], steps=25,
                     lr=3e-3, progress=False)
    assert report.final_loss < report.initial_loss


def test_hidden_state_term_and_bad_steps(tiny, ids):
    teacher = tiny.llama()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.model.layers[0].mlp.down_proj.weight.mul_(0.5)
    report = distill(student, teacher, [{"input_ids": ids}], steps=10, lr=1e-3, hidden_weight=1.0,
                     progress=False)
    assert report.final_loss < report.initial_loss
    with pytest.raises(ValueError, match="steps"):
        distill(student, teacher, [{"input_ids": ids}], steps=0)


def test_layer_term_pulls_every_layer_back_and_refuses_unpaired_depths(tiny, ids):
    from prunekit.hf.rewrite import keep_ffn_units, keep_layers

    teacher = tiny.bert(layers=3)
    student = copy.deepcopy(teacher)
    for index in range(3):
        keep_ffn_units(student, index, torch.arange(16))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def layer_gap(model) -> float:  # mean 1 − cos over the inner layers' token states
        with torch.no_grad():
            s = model(**batch, output_hidden_states=True).hidden_states[1:-1]
            t = teacher(**batch, output_hidden_states=True).hidden_states[1:-1]
        return float(sum((1 - torch.cosine_similarity(a, b, dim=-1)).mean() for a, b in zip(s, t)))

    before = layer_gap(student)
    report = distill(student, teacher, [batch], steps=25, lr=3e-3, layer_weight=1.0, progress=False)
    assert report.final_loss < report.initial_loss
    assert layer_gap(student) < 0.5 * before  # inner layers move, not only the last one
    keep_layers(student, [0, 2])
    with pytest.raises(ValueError, match="2 and 3 layers"):
        distill(student, teacher, [batch], steps=2, layer_weight=1.0, progress=False)
