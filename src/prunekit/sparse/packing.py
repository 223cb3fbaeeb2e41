"""Lossless byte packing of the arrays a sparse tensor is stored as (bits, indices, values).

Why: a bitmask costs one bit per element, which at 90 % sparsity is a quarter of the values'
size, and raw fp32 values carry a nearly constant sign/exponent byte. Splitting each array into
byte planes (byte 0 of every element, then byte 1, ...) and Huffman-coding the result with zlib
squeezes both out — the mask to about its entropy (~0.47 bit per element at 90 % sparsity), the
values by ~20 % — in milliseconds and with an exact round trip. A plane is kept raw whenever
deflating does not make it smaller.

>>> import numpy as np
>>> data, info = pack(np.arange(1000, dtype=np.uint16))
>>> bool((unpack(data, info) == np.arange(1000)).all())
True
"""

from __future__ import annotations

import zlib

import numpy as np

PartInfo = dict[str, object]

RAW = "raw"
DEFLATE_SHUFFLE = "deflate-shuffle"
UNSIGNED_BY_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class PackingError(ValueError):
    """A packed array does not decode to what its description promises."""


def smallest_unsigned(max_value: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned integer type that holds ``max_value`` (indices, offsets).

    >>> smallest_unsigned(255).__name__, smallest_unsigned(4096).__name__
    ('uint8', 'uint16')
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _deflate(data: bytes) -> bytes:
    # Huffman-only: on mask bits and float byte planes it compresses as well as level 9
    # LZ77 matching and is ~20x faster (measured on 1024x1024 pruned Gaussian weights).
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    return compressor.compress(data) + compressor.flush()


def pack(array: np.ndarray) -> tuple[np.ndarray, PartInfo]:
    """Bytes of a 1-D unsigned-integer array (byte-shuffled and deflated when smaller) + how to undo it.

    >>> data, info = pack(np.zeros(4096, dtype=np.uint8))
    >>> info["codec"], len(data) < 4096 // 4  # Huffman codes still spend >= 1 bit a byte
    ('deflate-shuffle', True)
    """
    array = np.ascontiguousarray(array).reshape(-1)
    if array.dtype.kind != "u":
        raise TypeError(f"pack expects an unsigned integer array, got {array.dtype}")
    itemsize = array.dtype.itemsize
    raw = array.view(np.uint8)
    info: PartInfo = {"codec": RAW, "itemsize": itemsize, "count": int(array.size)}
    if array.size == 0:
        return raw.copy(), info
    shuffled = raw.reshape(-1, itemsize).T.tobytes()
    deflated = _deflate(shuffled)
    if len(deflated) < raw.size:
        info["codec"] = DEFLATE_SHUFFLE
        return np.frombuffer(deflated, dtype=np.uint8).copy(), info
    return raw.copy(), info


def unpack(data: np.ndarray, info: PartInfo) -> np.ndarray:
    """Inverse of :func:`pack`: the original unsigned-integer array, checked for length."""
    try:
        itemsize, count, codec = int(info["itemsize"]), int(info["count"]), info["codec"]
    except (KeyError, TypeError, ValueError) as err:
        raise PackingError(f"part description {info!r} is incomplete") from err
    if itemsize not in UNSIGNED_BY_SIZE or count < 0:
        raise PackingError(f"part description {info!r} has an invalid itemsize or count")
    expected = itemsize * count
    raw = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    if codec == DEFLATE_SHUFFLE:
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(raw, expected + 1)
        except zlib.error as err:
            raise PackingError(f"compressed part does not inflate ({err})") from err
        if len(raw) != expected or not inflater.eof or inflater.unused_data:
            raise PackingError(
                f"compressed part does not inflate to exactly {expected} bytes "
                "(cut short, too long or with trailing bytes)"
            )
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, count)
        raw = planes.T.tobytes()
    elif codec != RAW:
        raise PackingError(f"unknown codec {codec!r}")
    if len(raw) != expected:
        raise PackingError(f"part holds {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=UNSIGNED_BY_SIZE[itemsize]).copy()
