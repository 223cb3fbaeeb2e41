import numpy as np
import pytest

from prunekit.sparse.packing import PackingError, pack, smallest_unsigned, unpack


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_round_trip_is_exact_for_every_width(dtype: type) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, np.iinfo(dtype).max, size=1001, dtype=dtype, endpoint=True)
    data, info = pack(array)
    out = unpack(data, info)
    assert out.dtype == dtype and np.array_equal(out, array)


def test_compressible_data_is_deflated_and_random_bytes_stay_raw() -> None:
    rng = np.random.default_rng(0)
    sparse_bits = np.packbits(rng.random(80_000) < 0.1)  # 10 % ones: ~0.47 bit of entropy each
    data, info = pack(sparse_bits)
    assert info["codec"] == "deflate-shuffle" and data.size < 0.6 * sparse_bits.size
    noise = rng.integers(0, 256, size=10_000, dtype=np.uint8)
    data, info = pack(noise)
    assert info["codec"] == "raw" and data.size == noise.size


def test_empty_array_round_trips() -> None:
    data, info = pack(np.zeros(0, dtype=np.uint16))
    assert unpack(data, info).size == 0


def test_signed_input_is_refused() -> None:
    with pytest.raises(TypeError, match="unsigned"):
        pack(np.zeros(3, dtype=np.int32))


def test_damaged_parts_raise_packing_errors() -> None:
    data, info = pack(np.zeros(5000, dtype=np.uint32))
    assert info["codec"] == "deflate-shuffle"
    with pytest.raises(PackingError):
        unpack(data[: data.size // 2], info)
    with pytest.raises(PackingError, match="exactly 16000 bytes"):
        unpack(data, {**info, "count": 4000})
    with pytest.raises(PackingError, match="unknown codec"):
        unpack(data, {**info, "codec": "lz4"})
    with pytest.raises(PackingError, match="incomplete"):
        unpack(data, {"codec": "raw"})
    with pytest.raises(PackingError, match="1-D uint8"):
        unpack(data.view(np.int8), info)


def test_a_forged_inflation_is_refused_before_inflating() -> None:
    import zlib

    bomb = np.frombuffer(zlib.compress(bytes(40_000_000), 9), dtype=np.uint8)  # ~39 KB
    info = {"codec": "deflate-shuffle", "itemsize": 4, "count": 10_000_000}
    with pytest.raises(PackingError, match="declares 40,000,000 bytes but holds"):
        unpack(bomb, info)


def test_smallest_unsigned_boundaries() -> None:
    assert smallest_unsigned(255) is np.uint8
    assert smallest_unsigned(256) is np.uint16
    assert smallest_unsigned(65_536) is np.uint32
    assert smallest_unsigned(2**32) is np.uint64
