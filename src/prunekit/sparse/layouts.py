"""One tensor as a file stores it: ``dense``, ``bitmask`` (mask + non-zero values) or ``csr``.

Why a module of its own: decoding is where a hostile or damaged file says how much memory to
allocate. A 68 KB file declaring a billion-element tensor used to reach gigabytes of RSS before
its checksum could refuse it. Here every size a description declares is checked, before any
allocation, against the bytes the file really holds for that tensor: a stored tensor decodes to
at most :data:`ELEMENTS_PER_BYTE` elements per stored byte (plus :data:`SMALL_TENSOR` elements).
That bound is what the encoder itself guarantees — a bitmask costs at least one Huffman bit per
mask byte, i.e. one byte per 64 elements, and a CSR tensor that would decode to more (a huge,
nearly empty one) is stored as a bitmask instead — so every file prunekit writes passes it, and
a file that breaks it is refused in one line.

>>> import torch
>>> entry, parts, _ = encode_tensor(torch.tensor([0.0, 0.0, 3.0, 0.0] * 64), "bitmask")
>>> entry["layout"], sorted(parts)
('bitmask', ['mask', 'values'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from prunekit.sparse.packing import pack, smallest_unsigned, unpack

Format = Literal["dense", "bitmask", "csr"]
FORMATS = ("dense", "bitmask", "csr")
PART_SEPARATOR = "::"
ELEMENTS_PER_BYTE = 64
"""Most elements one stored byte of a sparse tensor may decode to (see the module docstring)."""
SMALL_TENSOR = 4096
"""Elements any tensor may have whatever its stored size (headers dominate tiny tensors)."""
MAX_DIMS = 64

DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}  # fmt: skip
INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class LayoutError(ValueError):
    """A tensor's description and its payload do not fit together (damaged or forged)."""


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` → ``"float16"``, the spelling files use."""
    return str(dtype).removeprefix("torch.")


def _unsigned_bits(tensor: Tensor) -> np.ndarray:
    """The tensor's raw bits as flat unsigned integers: zero exactly where the element is 0."""
    signed = tensor.reshape(-1).view(INT_VIEW[tensor.element_size()]).numpy()
    return signed.view(f"u{tensor.element_size()}")


def _csr_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    rows = shape[0] if len(shape) >= 2 else 1
    return rows, math.prod(shape) // max(rows, 1)


def _decodable(numel: int, stored_bytes: int) -> bool:
    return numel <= ELEMENTS_PER_BYTE * stored_bytes + SMALL_TENSOR


def encode_tensor(
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
        rows, cols = _csr_shape(tuple(stored.shape))
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
    stored_bytes = sum(p.size for p in parts.values())
    if stored_bytes >= dense_bytes:
        return {"layout": "dense"}, None, stored
    if not _decodable(numel, stored_bytes):  # a huge, nearly empty CSR tensor: see the docstring
        return encode_tensor(stored, "bitmask")
    entry = {"layout": format, "nnz": nnz, "sparsity": 1 - nnz / numel, "parts": infos}
    return entry, parts, stored.masked_fill(~is_nonzero, 0)


def _checked_entry(entry: Any) -> tuple[torch.dtype, torch.dtype, tuple[int, ...], str]:
    if not isinstance(entry, dict):
        raise LayoutError("its description is not a mapping")
    dtype = DTYPES.get(str(entry.get("dtype")))
    stored_dtype = DTYPES.get(str(entry.get("stored_dtype")))
    if dtype is None or stored_dtype is None:
        raise LayoutError(f"dtype {entry.get('dtype')!r} / {entry.get('stored_dtype')!r} unknown")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise LayoutError(f"shape {str(shape)[:60]} is not a list of sizes")
    layout = entry.get("layout")
    if layout not in FORMATS:
        raise LayoutError(f"unknown layout {str(layout)[:40]!r}")
    return dtype, stored_dtype, tuple(shape), layout


def decode_tensor(name: str, entry: Any, tensors: Mapping[str, Tensor], used: set[str]) -> Tensor:
    """The tensor ``entry`` describes, from its payload in ``tensors``; marks the parts used.

    Raises :class:`LayoutError` (or :class:`~prunekit.sparse.packing.PackingError`) naming what
    does not fit, before allocating anything a declared size would make large.
    """
    dtype, stored_dtype, shape, layout = _checked_entry(entry)
    numel = math.prod(shape)
    if layout == "dense":
        used.add(name)
        stored = tensors.get(name)
        if stored is None:
            raise LayoutError("its payload is missing")
        if stored.dtype != stored_dtype or tuple(stored.shape) != shape:
            raise LayoutError(
                f"payload is {stored.dtype} {list(stored.shape)}, "
                f"metadata says {stored_dtype} {list(shape)}"
            )
        return stored.to(dtype)
    infos = entry.get("parts")
    wanted = ["mask"] if layout == "bitmask" else ["indptr", "indices"]
    wanted += [] if stored_dtype == torch.bool else ["values"]
    keys = {part: f"{name}{PART_SEPARATOR}{part}" for part in wanted}
    if not isinstance(infos, dict):
        raise LayoutError(f"a {layout} tensor needs descriptions of its parts {wanted}")
    broken = [
        key
        for part, key in keys.items()
        if not isinstance(infos.get(part), dict)
        or key not in tensors
        or tensors[key].dtype != torch.uint8
        or tensors[key].dim() != 1
    ]
    if broken:
        raise LayoutError(f"parts {broken} are missing, undescribed or not 1-D bytes")
    used.update(keys.values())
    stored_bytes = sum(tensors[k].numel() * tensors[k].element_size() for k in keys.values())
    if not _decodable(numel, stored_bytes):
        raise LayoutError(
            f"declares {numel:,} elements from {stored_bytes:,} stored bytes, more than "
            f"{ELEMENTS_PER_BYTE} per byte: the sizes are forged or damaged"
        )

    def part(key: str) -> np.ndarray:
        return unpack(tensors[keys[key]].numpy(), infos[key])

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
            raise LayoutError(f"{values.size} values for {int(nonzero.sum())} non-zeros")
        bits[nonzero] = values
    flat = torch.from_numpy(bits.view(f"i{width}")).view(stored_dtype)
    return flat.reshape(shape).to(dtype)


def _bitmask_positions(packed: np.ndarray, numel: int) -> np.ndarray:
    if packed.size != (numel + 7) // 8:
        raise LayoutError(f"bitmask holds {packed.size} bytes for {numel} elements")
    return np.unpackbits(packed, count=numel).astype(bool)


def _csr_positions(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = _csr_shape(shape)
    offsets = indptr.astype(np.int64)
    if offsets.size != rows + 1 or offsets[0] != 0 or offsets[-1] != indices.size:
        raise LayoutError("CSR row offsets do not match the shape or the number of indices")
    per_row = np.diff(offsets)
    if (per_row < 0).any() or (indices.size and int(indices.max()) >= cols):
        raise LayoutError("CSR row offsets decrease or a column index is out of range")
    positions = np.zeros(rows * cols, dtype=bool)
    positions[np.repeat(np.arange(rows), per_row) * cols + indices.astype(np.int64)] = True
    if int(positions.sum()) != indices.size:
        raise LayoutError("CSR column indices repeat within a row")
    return positions
