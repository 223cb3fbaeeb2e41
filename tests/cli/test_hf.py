"""``prunekit oneshot`` and ``prunekit shrink`` as a user meets them, on tiny HF folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from prunekit.cli import app

transformers = pytest.importorskip("transformers")
runner = CliRunner()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from prunekit.hf.corpus import corpus_text

    words = sorted(set(corpus_text("calibration").split()))[:62]
    backend = Tokenizer(models.WordLevel(vocab={"[PAD]": 0, "[UNK]": 1,
                                                **{w: i + 2 for i, w in enumerate(words)}},
                                         unk_token="[UNK]"))  # fmt: skip
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                                unk_token="[UNK]")


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    from prunekit.hf.corpus import corpus_text

    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, head_dim=8, vocab_size=64))
    bert = transformers.BertModel(transformers.BertConfig(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
        vocab_size=64))
    out = {"text": tmp_path / "text.txt"}
    out["text"].write_text(corpus_text("calibration")[:20_000])
    for name, model in (("llama", llama), ("bert", bert)):
        out[name] = tmp_path / name
        model.save_pretrained(out[name])
        _tokenizer().save_pretrained(out[name])
    return out


def _run(*args: str):
    return runner.invoke(app, [*args, "--samples", "4", "--seq-len", "16", "-q"])


def test_oneshot_writes_a_folder_from_pretrained_loads(folders, tmp_path):
    out = tmp_path / "pruned"
    result = _run("oneshot", str(folders["llama"]), "--method", "sparsegpt", "--nm", "2:4",
                  "--calibration", str(folders["text"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    weight = model.model.layers[1].mlp.down_proj.weight
    assert float((weight == 0).float().mean()) == 0.5
    report = json.loads((out / "prunekit_report.json").read_text())
    assert report["target"] == "2:4" and (out / "model.prunekit.safetensors").is_file()


def test_shrink_llama_gives_a_standard_smaller_model(folders, tmp_path):
    out = tmp_path / "small"
    result = _run("shrink", str(folders["llama"]), "--heads", "0.34", "--ffn", "0.5",
                  "--calibration", str(folders["text"]), "--recover-steps", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    config = transformers.AutoConfig.from_pretrained(out)
    assert (config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == (
        4, 2, 32)
    transformers.AutoModelForCausalLM.from_pretrained(out)


def test_shrink_bert_heads_says_why_from_pretrained_cannot_load_it(folders, tmp_path):
    import prunekit

    out = tmp_path / "bert"
    result = _run("shrink", str(folders["bert"]), "--heads", "0.25", "--calibration",
                  str(folders["text"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "from_pretrained cannot rebuild" in result.output
    assert not (out / "config.json").exists()  # no config that lies about the weights
    model = prunekit.load(out / "model.prunekit.safetensors")
    assert model.encoder.layer[0].attention.self.query.out_features == 24


@pytest.mark.parametrize("args, message", [
    (["oneshot", "{llama}", "--sparsity", "0.5", "--nm", "2:4"], "exactly one of"),
    (["oneshot", "{llama}", "--nm", "two"], "2:4"),
    (["oneshot", "{llama}", "--method", "obs", "--sparsity", "0.5"], "method"),
    (["oneshot", "{missing}", "--sparsity", "0.5"], "config.json"),
    (["shrink", "{llama}", "--heads", "1.5"], "fraction"),
    (["shrink", "{llama}"], "nothing to remove"),
])
def test_bad_input_is_one_line_and_exit_2(folders, tmp_path, args, message):
    paths = {"llama": str(folders["llama"]), "missing": str(tmp_path / "nope")}
    args = [a.format(**paths) for a in args]
    result = _run(*args, "--calibration", str(folders["text"]), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_shrink_bert_heads_writes_a_padded_form_automodel_loads_with_equal_outputs(folders,
                                                                                   tmp_path):
    import prunekit

    out = tmp_path / "bert-half"
    result = _run("shrink", str(folders["bert"]), "--heads", "0.5", "--ffn", "0.5",
                  "--calibration", str(folders["text"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "zero-padded" in result.output
    portable = transformers.AutoModel.from_pretrained(out).eval()
    compact = prunekit.load(out / "model.prunekit.safetensors").eval()
    assert portable.config.num_attention_heads == 2 and portable.config.intermediate_size == 32
    assert compact.encoder.layer[0].attention.self.query.out_features == 16  # 2 heads of 8
    assert portable.encoder.layer[0].attention.self.query.out_features == 32  # 2 heads of 16
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(portable(input_ids=ids).last_hidden_state,
                                   compact(input_ids=ids).last_hidden_state, atol=1e-5, rtol=1e-4)
