"""Tiny Hugging Face models built from configs (no weights downloaded), seeded, in eval mode."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 64


def tiny_llama(heads: int = 6, kv_heads: int = 2, layers: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=48, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=8, vocab_size=VOCAB, max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config).eval()


def tiny_bert(layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=layers,
        vocab_size=VOCAB, max_position_embeddings=64,
    )
    return transformers.BertModel(config).eval()


def tiny_gpt2(layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=32, n_head=4, n_layer=layers, n_positions=64,
                                     vocab_size=VOCAB, n_inner=64)
    return transformers.GPT2LMHeadModel(config).eval()


def tiny_vit(layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=layers,
        image_size=16, patch_size=8, num_channels=3,
    )
    return transformers.ViTModel(config).eval()


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def word_tokenizer():
    """A real fast tokenizer (word level, built in memory) for the text-facing functions."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from prunekit.hf.corpus import corpus_text

    words = sorted(set(corpus_text("calibration").split()) | set(corpus_text("evaluation").split()))
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words[: VOCAB - 2])}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                                unk_token="[UNK]")


@pytest.fixture
def tiny():
    """Factories of the tiny models: ``tiny.llama()``, ``tiny.bert()``, ``tiny.gpt2()``, ``tiny.vit()``."""
    from types import SimpleNamespace

    return SimpleNamespace(llama=tiny_llama, bert=tiny_bert, gpt2=tiny_gpt2, vit=tiny_vit)
