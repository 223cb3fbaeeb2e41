"""prunekit.save / prunekit.load of HF models: any shapes, tied weights, an allowlist."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import prunekit
from prunekit.hf.rewrite import keep_ffn_units, keep_heads
from prunekit.hf.saving import KEY_CLASS
from prunekit.sparse.storage import StorageError, load_state_dict, read_metadata, save_state_dict


def test_non_uniform_llama_round_trips_exactly(tiny, ids, tmp_path):
    model = tiny.llama()
    keep_heads(model, 0, [0, 3])  # one head per KV group
    keep_ffn_units(model, 2, torch.arange(10))
    path = prunekit.save(model, tmp_path / "m.safetensors", format="bitmask")
    loaded = prunekit.load(path)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # still tied
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    with safe_open(str(path), "pt") as f:
        assert "lm_head.weight" not in f.metadata()["prunekit.storage.tensors"]  # stored once


def test_head_pruned_bert_round_trips(tiny, ids, tmp_path):
    model = tiny.bert()
    for layer in range(2):
        keep_heads(model, layer, [1, 2, 3])
    loaded = prunekit.load(prunekit.save(model, tmp_path / "b.safetensors"))
    torch.testing.assert_close(loaded(ids).last_hidden_state, model(ids).last_hidden_state)


def _tampered(path, tmp_path, **changes):
    """A file whose metadata was edited and whose checksum was then recomputed, as an attacker
    can (a checksum is no signature): only the loader's own checks stand in the way."""
    metadata = {k: v for k, v in read_metadata(path).items() if not k.startswith("prunekit.storage.")}
    metadata.update(changes)
    return save_state_dict(load_state_dict(path), tmp_path / "tampered.safetensors",
                           format="dense", metadata=metadata)


def test_an_edited_file_fails_its_checksum_before_anything_is_built(tiny, tmp_path):
    path = prunekit.save(tiny.gpt2(), tmp_path / "g.safetensors")
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    metadata[KEY_CLASS] = "GPT2Model"
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=metadata)
    with pytest.raises(StorageError, match="checksum"):
        prunekit.load(tmp_path / "edited.safetensors")


def test_a_config_that_does_not_match_the_weights_is_refused(tiny, tmp_path):
    model = tiny.gpt2()
    path = prunekit.save(model, tmp_path / "g.safetensors")
    config = json.loads(model.config.to_json_string(use_diff=False))
    config["n_embd"] = 4096  # a bomb: the described model would be far larger than its weights
    bad = _tampered(path, tmp_path, **{"prunekit.hf.config": json.dumps(config)})
    with pytest.raises(StorageError, match="does not match its weights"):
        prunekit.load(bad)


def test_a_class_off_the_allowlist_is_refused(tiny, tmp_path):
    path = prunekit.save(tiny.gpt2(), tmp_path / "g.safetensors")
    bad = _tampered(path, tmp_path, **{KEY_CLASS: "AutoModel"})
    with pytest.raises(StorageError, match="allowlist"):
        prunekit.load(bad)


def test_a_model_type_without_adapter_is_refused(tiny, tmp_path):
    model = tiny.gpt2()
    path = prunekit.save(model, tmp_path / "g.safetensors")
    config = json.loads(model.config.to_json_string(use_diff=False))
    config["model_type"] = "t5"
    bad = _tampered(path, tmp_path, **{"prunekit.hf.config": json.dumps(config)})
    with pytest.raises(StorageError, match="adapter"):
        prunekit.load(bad)
