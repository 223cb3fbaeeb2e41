"""Load HF models safely (a directory or a GGUF file) and write them back in HF's format.

Safety: only architectures prunekit.hf knows (:data:`prunekit.hf.ARCHITECTURES`) are built, by
transformers' own classes (``trust_remote_code`` is never set, so no code from a model folder
runs); weights load from safetensors only (a folder with only ``pytorch_model.bin`` is refused:
a pickle can run code); GGUF files are read by the ``gguf`` package and dequantized to fp32.
Offline: nothing is ever fetched from a hub.

Writes: :func:`save_pretrained` writes the whole folder next to its destination and moves it
into place in one rename, so an interrupted save never leaves half a model where a good one was.

>>> import tempfile, torch
>>> from transformers import BertConfig, BertModel
>>> model = BertModel(BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
...     num_hidden_layers=2, vocab_size=60))
>>> folder = save_pretrained(model, None, tempfile.mkdtemp() + "/bert")
>>> loaded, _ = load_pretrained(folder)
>>> type(loaded).__name__
'BertModel'
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.hf.architectures import ARCHITECTURES

log = logging.getLogger(__name__)

COMPRESSED_NAME = "model.prunekit.safetensors"
TASKS = ("auto", "causal-lm", "base")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # the 'hf' extra is optional
        raise ImportError(
            "Hugging Face support needs transformers: pip install 'prunekit[hf]' -c constraints.txt"
        ) from err
    return transformers


def _check_config(config: Any, source: Path) -> None:
    if config.model_type not in ARCHITECTURES:
        raise ValueError(
            f"{source}: model_type {config.model_type!r} has no prunekit.hf adapter; supported: "
            f"{sorted(ARCHITECTURES)}"
        )


def _auto_class(config: Any, task: str) -> Any:
    transformers = _transformers()
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel"))
                 for a in (config.architectures or []))  # fmt: skip
    if task == "causal-lm" or (task == "auto" and causal):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_pretrained(
    source: str | os.PathLike[str],
    *,
    task: str = "auto",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` from an HF folder or a ``.gguf`` file; tokenizer None if absent.

    ``task="auto"`` builds the causal LM when the config names one (``*ForCausalLM``), else the
    base model (``AutoModel``: encoders such as BERT).
    """
    with hf_progress_bars(progress):
        return _load(_transformers(), Path(source), task, dtype)


@contextlib.contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars (loading, writing shards) on or off for the body."""
    bars = _transformers().utils.logging
    if enabled:
        yield
        return
    bars.disable_progress_bar()
    try:
        yield
    finally:
        bars.enable_progress_bar()


def _load(transformers: Any, source: Path, task: str, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    if source.suffix.lower() == ".gguf":
        return _load_gguf(source, dtype)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(
            f"{source} is neither a .gguf file nor a folder with config.json (save_pretrained "
            "output); pass one of those"
        )
    config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
    _check_config(config, source)
    if not any(source.glob("*.safetensors")):
        raise ValueError(
            f"{source} has no .safetensors weights; prunekit loads no pickled weights "
            "(pytorch_model.bin can run code). Convert them to safetensors first"
        )
    model = _auto_class(config, task).from_pretrained(
        source, local_files_only=True, use_safetensors=True, dtype=dtype
    )
    return model.eval(), _tokenizer(source, {})


def _tokenizer(source: Path, kwargs: dict[str, Any]) -> Any:
    transformers = _transformers()
    folder = source.parent if source.is_file() else source
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        log.info("no tokenizer in %s (%s)", folder, err)
        return None


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    transformers = _transformers()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    kwargs = {"gguf_file": path.name, "local_files_only": True}
    config = transformers.AutoConfig.from_pretrained(path.parent, **kwargs)
    _check_config(config, path)
    # a GGUF file holds a language model (llama.cpp's format): always the causal-LM class
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, dtype=dtype, **kwargs)
    # dequantized to `dtype` on load: what remains is an ordinary fp model, saved as one
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model.eval(), _tokenizer(path, {"gguf_file": path.name})


def save_pretrained(
    model: nn.Module,
    tokenizer: Any,
    out_dir: str | os.PathLike[str],
    *,
    compressed: bool = False,
    hf_files: bool = True,
    extra_files: dict[str, str] | None = None,
    compressed_model: nn.Module | None = None,
) -> Path:
    """Write ``save_pretrained`` output (+ tokenizer, + prunekit's compressed file when
    ``compressed``, + ``extra_files`` name → text) to ``out_dir``, replacing it atomically.

    ``hf_files=False`` writes prunekit's file instead of ``config.json`` + weights: for a model
    whose config cannot describe it (a config that does not match the weights is never written).
    ``compressed_model``: the model prunekit's file holds when it is not ``model`` (the compact
    form beside a portable HF twin, :mod:`prunekit.hf.padded_heads`).
    """
    from prunekit.hf.saving import save_hf

    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        if hf_files:
            model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if compressed or not hf_files or compressed_model is not None:
            save_hf(compressed_model or model, staging / COMPRESSED_NAME, format="bitmask")
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing ``target`` is removed only afterwards."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
