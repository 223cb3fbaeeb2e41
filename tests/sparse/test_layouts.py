"""Sizes a file declares are checked against the bytes it holds before anything is allocated."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from prunekit.sparse.layouts import ELEMENTS_PER_BYTE, LayoutError, decode_tensor, encode_tensor
from prunekit.sparse.packing import PackingError


def _bitmask_bomb(numel: int, *, lz77: bool) -> tuple[dict, dict]:
    """A bitmask tensor of ``numel`` zeros whose mask inflates from a few bytes: zlib's LZ77
    (which prunekit never writes) packs a zero byte run ~1000:1."""
    mask = np.zeros((numel + 7) // 8, dtype=np.uint8)
    packed = zlib.compress(mask.tobytes(), 9) if lz77 else mask.tobytes()
    info = {"codec": "deflate-shuffle" if lz77 else "raw", "itemsize": 1, "count": int(mask.size)}
    entry = {"layout": "bitmask", "dtype": "float32", "stored_dtype": "float32",
             "shape": [numel], "nnz": 0, "parts": {"mask": info, "values": {
                 "codec": "raw", "itemsize": 4, "count": 0}}}  # fmt: skip
    tensors = {"w::mask": torch.from_numpy(np.frombuffer(packed, dtype=np.uint8).copy()),
               "w::values": torch.zeros(0, dtype=torch.uint8)}  # fmt: skip
    return entry, tensors


def test_the_issues_bitmask_bomb_is_refused_before_inflating() -> None:
    entry, tensors = _bitmask_bomb(500_000_000, lz77=True)  # 62 MB of mask from ~60 KB
    with pytest.raises(LayoutError, match="500,000,000 elements from 60,760 stored bytes"):
        decode_tensor("w", entry, tensors, set())


def test_a_declared_shape_larger_than_the_stored_bytes_allow_is_refused() -> None:
    entry, tensors = _bitmask_bomb(64, lz77=False)
    entry["shape"] = [10**9]  # the mask part would be checked later; the bound comes first
    with pytest.raises(LayoutError, match="1,000,000,000 elements from 8 stored bytes"):
        decode_tensor("w", entry, tensors, set())


def test_a_csr_tensor_with_a_huge_row_is_refused() -> None:
    _, parts, _ = encode_tensor(torch.eye(8), "csr")
    entry, _, _ = encode_tensor(torch.eye(8), "csr")
    entry.update(dtype="float32", stored_dtype="float32", shape=[8, 2**40])
    tensors = {f"w::{k}": torch.from_numpy(v) for k, v in parts.items()}
    with pytest.raises(LayoutError, match="stored bytes"):
        decode_tensor("w", entry, tensors, set())


def test_the_writer_keeps_the_bound_a_huge_empty_csr_tensor_becomes_a_bitmask() -> None:
    empty = torch.zeros(1, 2_000_000)
    entry, parts, _ = encode_tensor(empty, "csr")
    assert entry["layout"] == "bitmask"
    stored = sum(p.size for p in parts.values())
    assert empty.numel() <= ELEMENTS_PER_BYTE * stored + 4096
    tensors = {f"w::{k}": torch.from_numpy(v) for k, v in parts.items()}
    entry.update(dtype="float32", stored_dtype="float32", shape=[1, 2_000_000])
    assert torch.equal(decode_tensor("w", entry, tensors, set()), empty)


@pytest.mark.parametrize(
    "change",
    [
        {"shape": "64"}, {"shape": [True, 64]}, {"shape": [-1]}, {"shape": [2] * 65},
        {"dtype": "object"}, {"stored_dtype": None}, {"layout": "zip"}, {"parts": []},
        {"parts": {"mask": "raw"}},
    ],
)  # fmt: skip
def test_malformed_descriptions_are_layout_errors(change: dict) -> None:
    entry, tensors = _bitmask_bomb(64, lz77=False)
    entry.update(change)
    with pytest.raises((LayoutError, PackingError)):
        decode_tensor("w", json.loads(json.dumps(entry)), tensors, set())


def test_a_part_that_is_not_bytes_is_refused() -> None:
    entry, tensors = _bitmask_bomb(64, lz77=False)
    tensors["w::mask"] = torch.zeros(2, dtype=torch.float32)
    with pytest.raises(LayoutError, match="not 1-D bytes"):
        decode_tensor("w", entry, tensors, set())
