"""Measure text models: perplexity, sentence-embedding fidelity and retrieval, latency, size.

- :func:`perplexity` — ``exp`` of the mean next-token loss over fixed windows (the caller pins
  sequence length and token count, :func:`prunekit.hf.corpus.evaluation_windows`).
- :func:`sentence_embeddings` — mean-pooled, L2-normalised last hidden states over the
  attention mask: what all-MiniLM-L6-v2 (sentence-transformers) serves as its embedding.
- :func:`mean_cosine` — fidelity of a pruned encoder: per-sentence cosine to the dense one.
- :func:`recall_at_1` — retrieval: each query's nearest passage is its own.
- :func:`latency` — HF models called with keyword inputs, timed round-robin by
  :func:`prunekit.latency.interleaved_times`, batch size, sequence length and threads recorded.

>>> import torch
>>> a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
>>> mean_cosine(a, a), recall_at_1(a, a)
(1.0, 1.0)
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.latency import fixed_threads, interleaved_times
from prunekit.modes import eval_mode


@torch.no_grad()
def perplexity(model: nn.Module, windows: Tensor, *, batch_size: int = 8) -> float:
    """Perplexity of a causal LM over ``windows`` ``(n, seq_len)``: every token after the first
    of each window is predicted from the ones before it."""
    total, count = 0.0, 0
    with eval_mode(model):
        for chunk in windows.split(batch_size):
            logits = model(input_ids=chunk, use_cache=False).logits[:, :-1]
            targets = chunk[:, 1:]
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += targets.numel()
    return math.exp(total / count)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> dict[str, Tensor]:
    """Padded, truncated model inputs for ``texts``."""
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt"))  # fmt: skip


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the hidden states of the real (unpadded) tokens, L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return nn.functional.normalize(pooled, dim=-1)


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 32,
    max_length: int = 128,
) -> Tensor:  # fmt: skip
    """One normalised embedding per text, ``(len(texts), hidden)``."""
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        inputs = encode_texts(tokenizer, texts[start : start + batch_size], max_length)
        hidden = model(**inputs).last_hidden_state
        out.append(mean_pool(hidden, inputs["attention_mask"]))
    return torch.cat(out)


def mean_cosine(a: Tensor, b: Tensor) -> float:
    """Mean cosine similarity of matching rows of ``a`` and ``b``."""
    return float(nn.functional.cosine_similarity(a, b, dim=-1).mean())


def recall_at_1(queries: Tensor, passages: Tensor) -> float:
    """Fraction of queries whose most similar passage (cosine) is the one at the same index."""
    sims = nn.functional.normalize(queries, dim=-1) @ nn.functional.normalize(passages, dim=-1).T
    return float((sims.argmax(dim=1) == torch.arange(len(queries))).float().mean())


_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[A-Z\"'])")


def sentences(text: str) -> list[str]:
    """``text`` cut after ``.``, ``!`` or ``?`` (and a closing quote) before a capitalised word."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def lead_body_pairs(documents: Sequence[str]) -> tuple[list[str], list[str]]:
    """Retrieval pairs from articles: each article's first sentence and the rest of it.

    A news lead summarises its article in other words, so finding an article from its lead is a
    paraphrase-like retrieval task with ground truth, built from the pinned corpus (no
    paraphrase data set installs offline). Articles of a single sentence are skipped.
    """
    leads, bodies = [], []
    for document in documents:
        parts = sentences(document)
        if len(parts) > 1:
            leads.append(parts[0])
            bodies.append(" ".join(parts[1:]))
    return leads, bodies


@torch.inference_mode()
def latency(
    models: Mapping[str, nn.Module],
    inputs: Mapping[str, Tensor],
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Median and p95 milliseconds per forward of each model on keyword ``inputs``, all timed
    round-robin in one pass (each timed call follows an untimed one of the same model)."""
    for model in models.values():
        model.eval()
    runs = {name: (lambda m=model: m(**inputs)) for name, model in models.items()}
    with fixed_threads(threads):
        times = interleaved_times(runs, repeats=repeats, warmup=warmup, untimed_per_turn=1)
        used = torch.get_num_threads()
    first = next(iter(inputs.values()))
    result = {}
    for name, values in times.items():
        ordered = sorted(values)
        result[name] = {
            "latency_ms": statistics.median(values),
            "latency_p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "batch_size": int(first.shape[0]),
            "seq_len": int(first.shape[1]) if first.dim() > 1 else 1,
            "threads": used,
            "repeats": repeats,
        }
    return result


def parameter_count(model: nn.Module) -> tuple[int, int]:
    """``(parameters, non-zero parameters)``, tied weights counted once."""
    unique = {p.data_ptr(): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique), sum(int(torch.count_nonzero(p)) for p in unique)
