"""The shrunk encoder exports to ONNX and runs at other batch sizes and lengths."""

from __future__ import annotations

import numpy as np
import onnxruntime
import torch

from prunekit.hf.onnx import export_encoder_onnx
from prunekit.hf.rewrite import keep_ffn_units, keep_heads


def test_head_pruned_encoder_runs_at_any_shape(tiny, tmp_path):
    model = tiny.bert()
    for layer in range(2):
        keep_heads(model, layer, [0, 2])
        keep_ffn_units(model, layer, torch.arange(20))
    path = export_encoder_onnx(model, tmp_path / "enc.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = torch.randint(1, 64, (5, 31), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.detach().numpy()
    assert got.shape == (5, 31, 32)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_attention_implementation_is_restored(tiny, tmp_path):
    model = tiny.bert()
    before = model.config._attn_implementation
    export_encoder_onnx(model, tmp_path / "enc.onnx")
    assert model.config._attn_implementation == before
