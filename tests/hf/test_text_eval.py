"""Text metrics checked against direct computations."""

from __future__ import annotations

import math

import torch

from prunekit.hf.text_eval import (
    lead_body_pairs,
    mean_pool,
    parameter_count,
    perplexity,
    recall_at_1,
    sentence_embeddings,
    sentences,
)


def test_perplexity_is_exp_of_hf_own_loss(tiny, ids):
    model = tiny.llama()
    expected = math.exp(float(model(input_ids=ids, labels=ids).loss))
    assert perplexity(model, ids, batch_size=1) == pytest_approx(expected)


def pytest_approx(value):
    import pytest

    return pytest.approx(value, rel=1e-5)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 0.0]]))


def test_embeddings_do_not_depend_on_batch_padding(tiny, word_tokenizer):
    model = tiny.bert()
    texts = ["The fire burned", "Rain fell on the city of Sydney today"]
    together = sentence_embeddings(model, word_tokenizer, texts)
    alone = sentence_embeddings(model, word_tokenizer, texts[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-5)


def test_recall_counts_the_own_passage_first():
    queries = torch.eye(3)
    passages = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert recall_at_1(queries, passages) == pytest_approx(1 / 3)


def test_lead_body_pairs_split_articles():
    leads, bodies = lead_body_pairs(["First one. Then more. And more!", "Only one sentence"])
    assert leads == ["First one."] and bodies == ["Then more. And more!"]
    assert sentences('He said "no." She left.') == ['He said "no."', "She left."]


def test_tied_weights_are_counted_once(tiny):
    model = tiny.llama()
    total, nonzero = parameter_count(model)
    assert total == sum(p.numel() for p in model.parameters())  # parameters() dedupes too
    assert total < sum(p.numel() for p in model.state_dict().values())
    assert nonzero <= total
