"""Save a (pruned, compacted) model to one file and load it back without its source code.

Why: after structured pruning a model's layers are smaller than its class builds, so
``model.load_state_dict`` into a fresh instance fails, and ``torch.save(model)`` pickles it, so
loading needs the user's source file *and* runs whatever code the file holds. ``save`` writes one
safetensors file instead: the weights (dense, or compressed as bitmask/CSR with optional fp16
values, through :mod:`prunekit.sparse.storage`, checksummed) and, in its metadata, the
architecture as JSON (:mod:`prunekit.export.architecture`: a torch.fx graph whose layers,
functions and methods are resolved only through an allowlist). ``load`` rebuilds an ordinary
``torch.fx.GraphModule`` whose outputs equal the saved model's, in any process that has
prunekit, with nothing unpickled. docs/saving.md compares this with torch.export, TorchScript
and ONNX.

>>> import tempfile, os, torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 2), nn.ReLU()).eval()
>>> path = save(model, os.path.join(tempfile.mkdtemp(), "model.safetensors"))
>>> x = torch.randn(3, 4)
>>> torch.equal(load(path)(x), model(x))
True
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from prunekit.export.architecture import ArchitectureError, describe, rebuild, trace
from prunekit.hf.architectures import is_hf_model
from prunekit.masks import has_masks
from prunekit.sparse.storage import (
    Format,
    StorageError,
    _looks_like_pickle,
    load_state_dict,
    read_metadata,
    save_state_dict,
)

ARCHITECTURE_KEY = "prunekit.architecture"
HF_CLASS_KEY = "prunekit.hf.class"  # prunekit.hf.saving.KEY_CLASS, without importing transformers
ALIGNMENT = 64  # bytes: what torch's CPU allocator guarantees and vector kernels expect

logger = logging.getLogger(__name__)


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: Format = "dense",
    values_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (architecture + weights) to ``path`` atomically; returns the path.

    ``format="bitmask"`` or ``"csr"`` stores sparse tensors compressed (each tensor keeps the
    smallest layout), ``values_dtype=torch.float16`` halves the stored values (lossy). A model
    that still holds pruning masks is refused: call ``prunekit.masks.strip(model)`` first, which
    makes the pruning permanent (the masks are training state, not part of the model).

    >>> import tempfile, os
    >>> from torch import nn
    >>> save(nn.Linear(2, 2), os.path.join(tempfile.mkdtemp(), "m.safetensors")).suffix
    '.safetensors'
    """
    if has_masks(model):
        raise ValueError(
            "the model still holds pruning masks (buffers named *_mask); call "
            "prunekit.masks.strip(model) to make the pruning permanent, then save"
        )
    if is_hf_model(model):  # HF code does not trace; prunekit.hf stores class + config + shapes
        from prunekit.hf.saving import save_hf

        return save_hf(model, path, format=format, values_dtype=values_dtype)
    graph_module = trace(model)
    description = describe(graph_module)
    state = {k: v for k, v in graph_module.state_dict().items() if k not in description["tied"]}
    return save_state_dict(
        state,
        path,
        format=format,
        values_dtype=values_dtype,
        metadata={ARCHITECTURE_KEY: json.dumps(description, separators=(",", ":"))},
    )


def load(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> nn.Module:
    """Rebuild the model saved at ``path`` by :func:`save`, without its source code.

    Pickle files (``torch.save``) are refused unless ``trust_pickle=True``: unpickling runs
    whatever code the file holds. With ``trust_pickle=True`` they are loaded with
    ``torch.load(weights_only=False)`` (and a warning), which also needs the classes' source
    code importable. (``trust_pickle`` is named as in :func:`prunekit.sparse.load_state_dict`.)

    >>> import tempfile, os
    >>> from torch import nn
    >>> path = save(nn.Flatten(), os.path.join(tempfile.mkdtemp(), "m.safetensors"))
    >>> load(path)(torch.zeros(2, 3, 4)).shape
    torch.Size([2, 12])
    """
    path = Path(path)
    if _looks_like_pickle(path):
        return _load_pickle(path, trust_pickle)
    if path.suffix.lower() == ".onnx":
        raise StorageError(
            f"{path} is an ONNX model; prunekit loads its own safetensors files. Run it with "
            "onnxruntime.InferenceSession(path), or load the prunekit file saved beside it"
        )
    metadata = read_metadata(path)
    if HF_CLASS_KEY in metadata:
        from prunekit.hf.saving import load_hf

        return load_hf(path)
    architecture = metadata.get(ARCHITECTURE_KEY)
    if architecture is None:
        raise StorageError(
            f"{path} holds weights only, no architecture: build the model in code and call "
            "model.load_state_dict(prunekit.sparse.load_state_dict(path)), or save it with "
            "prunekit.save(model, path) to make it loadable on its own"
        )
    state = {name: _aligned(tensor) for name, tensor in load_state_dict(path).items()}
    try:  # the checksum has vouched for the text; what it says is checked by rebuild
        description = json.loads(architecture)
    except (ValueError, RecursionError) as err:
        raise StorageError(f"{path}: the architecture metadata is damaged ({err})") from None
    try:
        return rebuild(description, state)
    except ArchitectureError as err:
        raise ArchitectureError(f"{path}: {err}") from err


def _aligned(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` in freshly allocated (64-byte aligned) memory where it is not.

    Tensors read from a safetensors file sit at arbitrary offsets of one buffer. Kernels run on
    misaligned weights can sum in a different order (MobileNetV2's outputs came out one ulp off),
    so the loaded model would not reproduce the saved one's outputs exactly.
    """
    return tensor if tensor.data_ptr() % ALIGNMENT == 0 else tensor.clone()


def _load_pickle(path: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        raise StorageError(
            f"{path} is a pickle (torch.save) file; prunekit does not unpickle files, because "
            "unpickling can run arbitrary code. If you trust its source, pass trust_pickle=True, "
            "then re-save it with prunekit.save(model, path) as a safe file"
        )
    logger.warning("unpickling %s (trust_pickle=True): this runs code stored in the file", path)
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, nn.Module):
        raise StorageError(
            f"{path} holds a {type(model).__name__}, not a model; for a state dict use "
            "prunekit.sparse.load_state_dict(path, trust_pickle=True)"
        )
    return model
