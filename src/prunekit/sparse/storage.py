"""Compressed weight files: each sparse tensor as a bitmask + values or as CSR, in safetensors.

Why: a 90 %-sparse model saved densely is still full size. Here every tensor is stored in the
smallest of its layouts — ``dense``, ``bitmask`` (one bit per element + the non-zero values) or
``csr`` (row offsets + column indices in the narrowest unsigned type + values) — and every array
is byte-shuffled and Huffman-coded when that is smaller (see :mod:`prunekit.sparse.packing`).
At 90 % sparsity a bitmask file is ~0.09x the dense fp32 file, ~0.05x with fp16 values.

Round trips are exact for every dtype (NaN and infinities included; a ``-0.0`` in a sparse
tensor is a zero like any other and comes back as ``+0.0``, so ``torch.equal`` holds) unless
``values_dtype`` narrows floating tensors: fp16/bf16 values are *lossy* (rounded to that
precision, decoded back to the original dtype). Files carry, in their safetensors metadata
under ``prunekit.storage.*``, a format version, per-tensor layout/shape/dtype/sparsity, and a
SHA-256 of the decoded tensors *and of every other metadata entry* (the architecture
:func:`prunekit.save` stores there), so a truncated, corrupted or edited file fails with an
error naming the file instead of loading wrong weights or a different model. A file that carries
``prunekit.*`` metadata but lacks a storage version or checksum is refused, so the check cannot
be switched off by editing a key. Sizes a file declares are checked against the bytes it holds
before anything is allocated (:mod:`prunekit.sparse.layouts`). Nothing is ever unpickled unless
the caller says ``trust_pickle=True``.

>>> import torch, tempfile, os
>>> w = torch.zeros(64, 64); w[0, :8] = 1.0
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> _ = save_state_dict({"w": w}, path)
>>> torch.equal(load_state_dict(path)["w"], w)
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from prunekit.io import atomic_write
from prunekit.sparse.layouts import (
    DTYPES,
    FORMATS,
    PART_SEPARATOR,
    Format,
    LayoutError,
    decode_tensor,
    dtype_name,
    encode_tensor,
)
from prunekit.sparse.packing import PackingError

FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")  # 1: the checksum covered the tensors only (weights-only files)
KEY_PREFIX = "prunekit."
KEY_VERSION = "prunekit.storage.version"
KEY_TENSORS = "prunekit.storage.tensors"
KEY_CHECKSUM = "prunekit.storage.sha256"
STORAGE_KEYS = (KEY_VERSION, KEY_TENSORS, KEY_CHECKSUM)

VALUE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
PICKLE_PROTO = b"\x80"  # a pickle of protocol >= 2 opens with PROTO, then the version byte
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container


class StorageError(ValueError):
    """A weight file or payload cannot be decoded: truncated, corrupted, mismatched or unsafe."""


def encode(
    state: Mapping[str, Tensor],
    format: Format = "bitmask",
    values_dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Encode a state dict into safetensors-ready tensors and metadata.

    ``format`` is the sparse layout to try; each tensor keeps it only where it is smaller than
    dense. ``values_dtype`` (fp16/bf16, lossy) stores floating tensors narrower. ``metadata``
    (string keys and values, none under ``prunekit.storage.``) rides along, covered by the
    checksum; the returned metadata holds it and the ``prunekit.storage.*`` keys.

    >>> tensors, meta = encode({"w": torch.tensor([0.0, 2.0, 0.0, 0.0])}, "csr")
    >>> torch.equal(decode(tensors, meta)["w"], torch.tensor([0.0, 2.0, 0.0, 0.0]))
    True
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}; pick one of them")
    if values_dtype is not None and values_dtype not in VALUE_DTYPES:
        raise ValueError(f"values_dtype={values_dtype} is not one of {VALUE_DTYPES} or None")
    extra = dict(metadata or {})
    clashing = sorted(k for k in extra if k.startswith("prunekit.storage."))
    if clashing:
        raise ValueError(f"metadata keys {clashing} are reserved for prunekit.storage; rename them")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError("metadata keys and values must be strings (safetensors stores text)")
    tensors: dict[str, Tensor] = {}
    index: dict[str, dict[str, object]] = {}
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = _checked_tensor(name, state[name])
        stored = _narrowed(name, tensor, values_dtype)
        entry, parts, decoded = encode_tensor(stored, format)
        entry.update(dtype=dtype_name(tensor.dtype), stored_dtype=dtype_name(stored.dtype))
        entry["shape"] = list(tensor.shape)
        index[name] = entry
        if parts is None:
            tensors[name] = stored
        else:
            for part, data in parts.items():
                tensors[f"{name}{PART_SEPARATOR}{part}"] = torch.from_numpy(data)
        _update_digest(digest, name, decoded.to(tensor.dtype))
    _update_digest_metadata(digest, extra)
    return tensors, {
        **extra,
        KEY_VERSION: FORMAT_VERSION,
        KEY_TENSORS: json.dumps(index, separators=(",", ":")),
        KEY_CHECKSUM: digest.hexdigest(),
    }


def decode(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> dict[str, Tensor]:
    """Inverse of :func:`encode`; verifies keys, shapes, payload sizes and the checksum.

    >>> t, m = encode({"mask": torch.tensor([True, False] * 50)})
    >>> decode(t, m)["mask"].sum().item()
    50
    """
    version = metadata.get(KEY_VERSION)
    if version is None or KEY_CHECKSUM not in metadata:
        raise StorageError(
            "the file carries prunekit metadata but no storage version or checksum: it was "
            "edited or damaged after saving"
        )
    if version not in READABLE_VERSIONS:
        raise StorageError(
            f"storage format version {str(version)[:20]!r} is not supported (this prunekit reads "
            f"{', '.join(READABLE_VERSIONS)}); load it with the prunekit version that wrote it"
        )
    extra = {k: v for k, v in metadata.items() if k not in STORAGE_KEYS}
    if version == "1" and any(k.startswith(KEY_PREFIX) for k in extra):
        raise StorageError(
            "the file was written by an older prunekit whose checksum did not cover its "
            "architecture; save the model again with this prunekit"
        )
    try:
        index = json.loads(metadata[KEY_TENSORS])
        checksum = metadata[KEY_CHECKSUM]
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        raise StorageError(f"the storage metadata is damaged ({type(err).__name__})") from None
    if not isinstance(index, dict):
        raise StorageError("the storage metadata is damaged (tensor index is not a mapping)")
    used: set[str] = set()
    decoded: dict[str, Tensor] = {}
    digest = hashlib.sha256()
    for name in sorted(index):
        try:
            decoded[name] = decode_tensor(name, index[name], tensors, used)
        except (LayoutError, PackingError, RuntimeError, MemoryError) as err:
            raise StorageError(f"tensor {name[:80]!r} cannot be decoded: {err}") from err
        _update_digest(digest, name, decoded[name])
    if version != "1":
        _update_digest_metadata(digest, extra)
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise StorageError(
            f"payload holds tensors the metadata does not describe: {unexpected[:5]}"
        )
    if digest.hexdigest() != checksum:
        raise StorageError(
            "checksum mismatch: the decoded tensors or the metadata differ from what was saved"
        )
    return decoded


def save_state_dict(
    state: Mapping[str, Tensor],
    path: str | os.PathLike[str],
    *,
    format: Format = "bitmask",
    values_dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state`` compressed to ``path`` atomically; extra ``metadata`` rides along.

    >>> import tempfile, os
    >>> p = save_state_dict({"b": torch.ones(3)}, os.path.join(tempfile.mkdtemp(), "m.safetensors"))
    >>> p.suffix
    '.safetensors'
    """
    tensors, full_metadata = encode(state, format, values_dtype, metadata)
    target = Path(path)
    with atomic_write(target) as tmp:
        save_file(tensors, str(tmp), metadata=full_metadata)
    return target


def load_state_dict(
    path: str | os.PathLike[str], *, trust_pickle: bool = False
) -> dict[str, Tensor]:
    """Read a file written by :func:`save_state_dict` (or a plain safetensors file) exactly.

    A pickle / ``torch.save`` file is refused unless ``trust_pickle=True``, and even then it is
    read with ``torch.load(weights_only=True)``, which rebuilds tensors but no arbitrary objects.

    >>> import tempfile, os
    >>> p = save_state_dict({"b": torch.ones(3)}, os.path.join(tempfile.mkdtemp(), "m.safetensors"))
    >>> load_state_dict(p)["b"].tolist()
    [1.0, 1.0, 1.0]
    """
    path = Path(path)
    if _looks_like_pickle(path):
        return _load_trusted_pickle(path, trust_pickle)
    tensors, metadata = _read_safetensors(path)
    if not any(key.startswith(KEY_PREFIX) for key in metadata):
        return tensors  # a plain safetensors file, written by something else
    try:
        return decode(tensors, metadata)
    except StorageError as err:
        raise StorageError(
            f"{path}: {err}. The file is corrupted, truncated or was edited after saving; "
            "restore it from its source or save the model again"
        ) from err


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The safetensors metadata of ``path`` (storage keys and whatever else was saved with it)."""
    path = Path(path)
    if _looks_like_pickle(path):
        raise StorageError(f"{path} is a pickle file, which has no safetensors metadata")
    return _read_safetensors(path, metadata_only=True)[1]


def _checked_tensor(name: str, value: object) -> Tensor:
    if PART_SEPARATOR in name:
        raise ValueError(f"tensor name {name!r} contains {PART_SEPARATOR!r}; rename it")
    if not isinstance(value, Tensor):
        raise TypeError(f"state[{name!r}] is a {type(value).__name__}, expected a torch.Tensor")
    if value.dtype not in DTYPES.values():
        raise TypeError(f"state[{name!r}] has dtype {value.dtype}; supported: {sorted(DTYPES)}")
    return value.detach().to("cpu").contiguous()


def _narrowed(name: str, tensor: Tensor, values_dtype: torch.dtype | None) -> Tensor:
    if values_dtype is None or not tensor.is_floating_point() or tensor.dtype == values_dtype:
        return tensor
    stored = tensor.to(values_dtype)
    if bool((torch.isfinite(tensor) & ~torch.isfinite(stored)).any()):
        raise ValueError(
            f"state[{name!r}] has values outside the {values_dtype} range; "
            "use values_dtype=torch.bfloat16 or None"
        )
    return stored


def _update_digest(digest: hashlib._Hash, name: str, tensor: Tensor) -> None:
    header = json.dumps([name, dtype_name(tensor.dtype), list(tensor.shape)])
    digest.update(header.encode())
    digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _update_digest_metadata(digest: hashlib._Hash, extra: Mapping[str, str]) -> None:
    """Every metadata entry beside the storage keys (the architecture, for one) is checksummed:
    with none, the digest is the tensors' alone, as version 1 computed it."""
    if extra:
        digest.update(json.dumps(sorted(extra.items())).encode())


def _looks_like_pickle(path: Path) -> bool:
    """True for torch.save zips and raw pickles; a safetensors header opens with ``{`` at byte 8."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path")
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":
        return False
    is_pickle = len(head) >= 2 and head[:1] == PICKLE_PROTO and 2 <= head[1] <= 5
    return head.startswith(ZIP_MAGIC) or is_pickle


def _load_trusted_pickle(path: Path, trust_pickle: bool) -> dict[str, Tensor]:
    if not trust_pickle:
        raise StorageError(
            f"{path} is a pickle (torch.save) file; prunekit does not unpickle files, because "
            "unpickling can run arbitrary code. If you trust its source, pass trust_pickle=True "
            "(it is then read with torch.load(weights_only=True)) and re-save it as safetensors"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise StorageError(f"{path} does not hold a state dict (a dict of tensors)")
    return state


def _read_safetensors(
    path: Path, *, metadata_only: bool = False
) -> tuple[dict[str, Tensor], dict[str, str]]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    if size < 8 or header_len > size - 8:
        raise StorageError(
            f"{path} is truncated or is not a safetensors file ({size} bytes, header claims "
            f"{header_len}); copy it again from its source or save the model again"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            names = [] if metadata_only else list(f.keys())
            tensors = {k: f.get_tensor(k) for k in names}
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise StorageError(
            f"{path} is corrupted or truncated ({err}); copy it again or save the model again"
        ) from err
    return tensors, metadata
