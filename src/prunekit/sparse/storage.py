"""Compressed weight files: each sparse tensor as a bitmask + values or as CSR, in safetensors.

Why: a 90 %-sparse model saved densely is still full size. Here every tensor is stored in the
smallest of its layouts — ``dense``, ``bitmask`` (one bit per element + the non-zero values) or
``csr`` (row offsets + column indices in the narrowest unsigned type + values) — and every array
is byte-shuffled and Huffman-coded when that is smaller (see :mod:`prunekit.sparse.packing`).
At 90 % sparsity a bitmask file is ~0.09x the dense fp32 file, ~0.05x with fp16 values.

Round trips are exact for every dtype (NaN and infinities included; a ``-0.0`` in a sparse
tensor is a zero like any other and comes back as ``+0.0``, so ``torch.equal`` holds) unless
``values_dtype`` narrows floating tensors: fp16/bf16 values are *lossy* (rounded to that
precision, decoded back to the original dtype). Files carry, in their safetensors metadata under ``prunekit.storage.*``,
a format version, per-tensor layout/shape/dtype/sparsity, and a SHA-256 of the decoded tensors,
so a truncated, corrupted or edited file fails with an error naming the file instead of loading
wrong weights. Nothing is ever unpickled unless the caller says ``trust_pickle=True``.

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
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from prunekit.io import atomic_write
from prunekit.sparse.packing import PackingError, pack, smallest_unsigned, unpack

Format = Literal["dense", "bitmask", "csr"]
FORMATS = ("dense", "bitmask", "csr")
FORMAT_VERSION = "1"
KEY_VERSION = "prunekit.storage.version"
KEY_TENSORS = "prunekit.storage.tensors"
KEY_CHECKSUM = "prunekit.storage.sha256"
PART_SEPARATOR = "::"

VALUE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}  # fmt: skip
INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
PICKLE_PROTO = b"\x80"  # a pickle of protocol >= 2 opens with PROTO, then the version byte
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container


class StorageError(ValueError):
    """A weight file or payload cannot be decoded: truncated, corrupted, mismatched or unsafe."""


def encode(
    state: Mapping[str, Tensor],
    format: Format = "bitmask",
    values_dtype: torch.dtype | None = None,
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Encode a state dict into safetensors-ready tensors and ``prunekit.storage.*`` metadata.

    ``format`` is the sparse layout to try; each tensor keeps it only where it is smaller than
    dense. ``values_dtype`` (fp16/bf16, lossy) stores floating tensors narrower.

    >>> tensors, meta = encode({"w": torch.tensor([0.0, 2.0, 0.0, 0.0])}, "csr")
    >>> torch.equal(decode(tensors, meta)["w"], torch.tensor([0.0, 2.0, 0.0, 0.0]))
    True
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}; pick one of them")
    if values_dtype is not None and values_dtype not in VALUE_DTYPES:
        raise ValueError(f"values_dtype={values_dtype} is not one of {VALUE_DTYPES} or None")
    tensors: dict[str, Tensor] = {}
    index: dict[str, dict[str, object]] = {}
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = _checked_tensor(name, state[name])
        stored = _narrowed(name, tensor, values_dtype)
        entry, parts, decoded = _encode_tensor(stored, format)
        entry.update(dtype=_dtype_name(tensor.dtype), stored_dtype=_dtype_name(stored.dtype))
        entry["shape"] = list(tensor.shape)
        index[name] = entry
        if parts is None:
            tensors[name] = stored
        else:
            for part, data in parts.items():
                tensors[f"{name}{PART_SEPARATOR}{part}"] = torch.from_numpy(data)
        _update_digest(digest, name, decoded.to(tensor.dtype))
    metadata = {
        KEY_VERSION: FORMAT_VERSION,
        KEY_TENSORS: json.dumps(index, separators=(",", ":")),
        KEY_CHECKSUM: digest.hexdigest(),
    }
    return tensors, metadata


def decode(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> dict[str, Tensor]:
    """Inverse of :func:`encode`; verifies keys, shapes, payload lengths and the checksum.

    >>> t, m = encode({"mask": torch.tensor([True, False] * 50)})
    >>> decode(t, m)["mask"].sum().item()
    50
    """
    version = metadata.get(KEY_VERSION)
    if version != FORMAT_VERSION:
        raise StorageError(
            f"storage format version {version!r} is not supported (this prunekit reads "
            f"{FORMAT_VERSION!r}); load it with the prunekit version that wrote it"
        )
    try:
        index = json.loads(metadata[KEY_TENSORS])
        checksum = metadata[KEY_CHECKSUM]
    except (KeyError, json.JSONDecodeError) as err:
        raise StorageError(f"the storage metadata is damaged ({err})") from err
    if not isinstance(index, dict):
        raise StorageError("the storage metadata is damaged (tensor index is not a mapping)")
    used: set[str] = set()
    decoded: dict[str, Tensor] = {}
    digest = hashlib.sha256()
    for name in sorted(index):
        try:
            decoded[name] = _decode_tensor(name, index[name], tensors, used)
        except (PackingError, KeyError, TypeError, ValueError, RuntimeError) as err:
            raise StorageError(f"tensor {name!r} cannot be decoded: {err}") from err
        _update_digest(digest, name, decoded[name])
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise StorageError(f"payload holds tensors the metadata does not describe: {unexpected}")
    if digest.hexdigest() != checksum:
        raise StorageError("checksum mismatch: the decoded tensors differ from what was saved")
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
    tensors, storage_metadata = encode(state, format, values_dtype)
    extra = dict(metadata or {})
    clashing = sorted(k for k in extra if k.startswith("prunekit.storage."))
    if clashing:
        raise ValueError(f"metadata keys {clashing} are reserved for prunekit.storage; rename them")
    target = Path(path)
    with atomic_write(target) as tmp:
        save_file(tensors, str(tmp), metadata={**extra, **storage_metadata})
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
    if KEY_VERSION not in metadata:
        return tensors
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


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _update_digest(digest: hashlib._Hash, name: str, tensor: Tensor) -> None:
    header = json.dumps([name, _dtype_name(tensor.dtype), list(tensor.shape)])
    digest.update(header.encode())
    digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _unsigned_bits(tensor: Tensor) -> np.ndarray:
    """The tensor's raw bits as flat unsigned integers: zero exactly where the element is 0."""
    signed = tensor.reshape(-1).view(INT_VIEW[tensor.element_size()]).numpy()
    return signed.view(f"u{tensor.element_size()}")


def _csr_shape(shape: torch.Size) -> tuple[int, int]:
    rows = shape[0] if len(shape) >= 2 else 1
    return rows, math.prod(shape) // max(rows, 1)


def _encode_tensor(
    stored: Tensor, format: Format
) -> tuple[dict[str, object], dict[str, np.ndarray] | None, Tensor]:
    """The tensor's index entry, its packed parts (``None`` where dense is smallest), and the
    tensor exactly as decoding will return it."""
    numel = stored.numel()
    dense_bytes = numel * stored.element_size()
    if format == "dense" or numel == 0:
        return {"layout": "dense"}, None, stored
    is_nonzero = stored != 0  # -0.0 counts as zero (and comes back +0.0); NaN is kept
    nonzero = is_nonzero.reshape(-1).numpy()
    bits = _unsigned_bits(stored)
    nnz = int(nonzero.sum())
    arrays: dict[str, np.ndarray] = {}
    if format == "bitmask":
        arrays["mask"] = np.packbits(nonzero)
    else:
        rows, cols = _csr_shape(stored.shape)
        per_row = nonzero.reshape(rows, cols).sum(axis=1)
        indptr = np.concatenate([[0], np.cumsum(per_row)])
        arrays["indptr"] = indptr.astype(smallest_unsigned(nnz))
        columns = np.nonzero(nonzero.reshape(rows, cols))[1]
        arrays["indices"] = columns.astype(smallest_unsigned(cols - 1))
    if stored.dtype != torch.bool:  # a bool tensor's non-zeros are all True: the mask says it all
        arrays["values"] = bits[nonzero]
    parts, infos = {}, {}
    for part, array in arrays.items():
        parts[part], infos[part] = pack(array)
    if sum(p.size for p in parts.values()) >= dense_bytes:
        return {"layout": "dense"}, None, stored
    entry = {"layout": format, "nnz": nnz, "sparsity": 1 - nnz / numel, "parts": infos}
    return entry, parts, stored.masked_fill(~is_nonzero, 0)


def _decode_tensor(
    name: str, entry: dict[str, object], tensors: Mapping[str, Tensor], used: set[str]
) -> Tensor:
    dtype = DTYPES[str(entry["dtype"])]
    stored_dtype = DTYPES[str(entry["stored_dtype"])]
    shape = torch.Size(int(n) for n in entry["shape"])  # type: ignore[attr-defined]
    layout = entry["layout"]
    if layout == "dense":
        used.add(name)
        stored = tensors[name]
        if stored.dtype != stored_dtype or stored.shape != shape:
            raise ValueError(
                f"payload is {stored.dtype} {list(stored.shape)}, "
                f"metadata says {stored_dtype} {list(shape)}"
            )
        return stored.to(dtype)
    if layout not in ("bitmask", "csr"):
        raise ValueError(f"unknown layout {layout!r}")
    infos = entry["parts"]
    if not isinstance(infos, dict):
        raise TypeError("part descriptions are missing")

    def part(key: str) -> np.ndarray:
        used.add(f"{name}{PART_SEPARATOR}{key}")
        payload = tensors[f"{name}{PART_SEPARATOR}{key}"]
        return unpack(payload.numpy(), infos[key])

    numel = shape.numel()
    nonzero = (
        _bitmask_positions(part("mask"), numel)
        if layout == "bitmask"
        else _csr_positions(part("indptr"), part("indices"), shape)
    )
    width = torch.empty((), dtype=stored_dtype).element_size()
    bits = np.zeros(numel, dtype=f"u{width}")
    if stored_dtype == torch.bool:
        bits[nonzero] = 1
    else:
        values = part("values")
        if values.size != nonzero.sum() or values.dtype.itemsize != width:
            raise ValueError(f"{values.size} values for {int(nonzero.sum())} non-zeros")
        bits[nonzero] = values
    flat = torch.from_numpy(bits.view(f"i{width}")).view(stored_dtype)
    return flat.reshape(shape).to(dtype)


def _bitmask_positions(packed: np.ndarray, numel: int) -> np.ndarray:
    if packed.size != (numel + 7) // 8:
        raise ValueError(f"bitmask holds {packed.size} bytes for {numel} elements")
    return np.unpackbits(packed, count=numel).astype(bool)


def _csr_positions(indptr: np.ndarray, indices: np.ndarray, shape: torch.Size) -> np.ndarray:
    rows, cols = _csr_shape(shape)
    offsets = indptr.astype(np.int64)
    if offsets.size != rows + 1 or offsets[0] != 0 or offsets[-1] != indices.size:
        raise ValueError("CSR row offsets do not match the shape or the number of indices")
    per_row = np.diff(offsets)
    if (per_row < 0).any() or (indices.size and int(indices.max()) >= cols):
        raise ValueError("CSR row offsets decrease or a column index is out of range")
    positions = np.zeros(rows * cols, dtype=bool)
    positions[np.repeat(np.arange(rows), per_row) * cols + indices.astype(np.int64)] = True
    if int(positions.sum()) != indices.size:
        raise ValueError("CSR column indices repeat within a row")
    return positions


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
