"""Loading HF folders safely, and writing them atomically."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf.loading import COMPRESSED_NAME, load_pretrained, save_pretrained


def test_oneshot_output_loads_with_from_pretrained(tiny, ids, tmp_path, word_tokenizer):
    from transformers import AutoModelForCausalLM

    import prunekit
    from prunekit.hf.oneshot import prune_oneshot

    model = tiny.llama()
    prune_oneshot(model, [{"input_ids": ids}], method="wanda", sparsity=0.5, progress=False)
    folder = save_pretrained(model, word_tokenizer, tmp_path / "out", compressed=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)  # zeros in place
    compressed = prunekit.load(folder / COMPRESSED_NAME)
    torch.testing.assert_close(compressed(ids).logits, model(ids).logits)
    assert (folder / COMPRESSED_NAME).stat().st_size < (folder / "model.safetensors").stat().st_size
    _, tokenizer = load_pretrained(folder)
    assert tokenizer is not None


def test_saving_over_a_folder_replaces_it_whole(tiny, tmp_path):
    folder = tmp_path / "m"
    save_pretrained(tiny.bert(), None, folder, extra_files={"old.txt": "x"})
    save_pretrained(tiny.bert(), None, folder)
    assert not (folder / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind


def test_pickled_weights_are_refused(tiny, tmp_path):
    model = tiny.bert()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled"):
        load_pretrained(tmp_path)


def test_unknown_architectures_and_missing_folders(tmp_path):
    from transformers import T5Config

    T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=10).save_pretrained(
        tmp_path)
    with pytest.raises(ValueError, match="adapter"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path / "nothing")
