"""Hugging Face transformers and LLMs as they are: one-shot pruning, width/depth shrinking,
recovery by distillation, text evaluation, and saving in HF's own format.

Needs the optional extra: ``pip install 'prunekit[hf]' -c constraints.txt`` (``make hf``).
Nothing here imports transformers until a model is loaded or saved. See docs/hf.md.

- :func:`prune_oneshot` — magnitude / Wanda / SparseGPT, unstructured or N:M, uniform or OWL;
- :func:`shrink` — heads (GQA-aware), FFN units (gate+up coupled), whole layers;
- :func:`distill` — recovery from the dense model;
- :func:`load_pretrained` / :func:`save_pretrained` — HF folders and GGUF files, safely;
- :func:`export_encoder_onnx` — the shrunk encoder with dynamic batch and length;
- :data:`ARCHITECTURES` — the adapters (one line per ``model_type``).
"""

from prunekit.hf.architectures import (
    ARCHITECTURES,
    Architecture,
    UnsupportedModelError,
    is_hf_model,
    structured_pruning_hint,
)
from prunekit.hf.distill import RecoveryReport, distill
from prunekit.hf.loading import load_pretrained, save_pretrained
from prunekit.hf.oneshot import METHODS, OneShotReport, prune_oneshot
from prunekit.hf.onnx import export_encoder_onnx
from prunekit.hf.shrink import ShrinkReport, shrink

__all__ = [
    "ARCHITECTURES",
    "METHODS",
    "Architecture",
    "OneShotReport",
    "RecoveryReport",
    "ShrinkReport",
    "UnsupportedModelError",
    "distill",
    "export_encoder_onnx",
    "is_hf_model",
    "load_pretrained",
    "prune_oneshot",
    "save_pretrained",
    "shrink",
    "structured_pruning_hint",
]
