"""ONNX export of a (shrunk) HF encoder, with dynamic batch and sequence length, verified.

Why a separate exporter: :func:`prunekit.export.onnx.export_onnx` exports one tensor input,
and an HF encoder takes ``input_ids`` and ``attention_mask`` and returns a ``ModelOutput``.
Here the encoder is wrapped to take both tensors and return ``last_hidden_state``; it is
exported with the attention computed in plain operations (``attn_implementation="eager"``:
the SDPA path's mask helpers do not trace reliably), written atomically, checked with
``onnx.checker``, and run in onnxruntime on inputs of a *different* batch size and length
than the export example, padding included, against PyTorch's outputs — a file that exists is
a file that works at any shape.

>>> import tempfile, torch
>>> from transformers import BertConfig, BertModel
>>> model = BertModel(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
...     num_hidden_layers=1, vocab_size=60)).eval()
>>> path = export_encoder_onnx(model, tempfile.mkdtemp() + "/enc.onnx")
>>> path.suffix
'.onnx'
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from prunekit.io import atomic_write

INPUTS = ("input_ids", "attention_mask")


class OnnxEncoderError(RuntimeError):
    """The exported file does not reproduce the encoder."""


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _example(vocab: int, batch: int, length: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length // 2 :] = 0  # one padded row: the mask must really be an input
    return {"input_ids": ids, "attention_mask": mask}


def export_encoder_onnx(
    model: nn.Module, path: str | os.PathLike[str], *, opset: int = 17, atol: float = 1e-4
) -> Path:
    """Write ``model`` (an HF encoder) to ``path`` as ONNX; verified in onnxruntime."""
    import onnxruntime

    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    wrapper = _Encoder(model).eval()
    vocab = int(model.config.vocab_size)
    target = Path(path)
    try:
        with atomic_write(target) as tmp, torch.no_grad():
            example = _example(vocab, 2, 16, seed=0)
            torch.onnx.export(
                wrapper, (example["input_ids"], example["attention_mask"]), str(tmp),
                dynamo=False, opset_version=opset, input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "sequence"}
                              for name in (*INPUTS, "last_hidden_state")},
            )  # fmt: skip
            import onnx

            onnx.checker.check_model(str(tmp), full_check=True)
            check = _example(vocab, 3, 23, seed=1)
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = session.run(None, {k: v.numpy() for k, v in check.items()})[0]
            expected = wrapper(**check)
            real = check["attention_mask"].bool()
            error = float((torch.from_numpy(got) - expected)[real].abs().max())
            if error > atol:
                raise OnnxEncoderError(f"onnxruntime differs from PyTorch by {error:.2e} > {atol}")
    finally:
        model.set_attn_implementation(previous)
    return target
