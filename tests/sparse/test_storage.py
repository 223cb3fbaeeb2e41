import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunekit.sparse.storage import (
    StorageError,
    decode,
    encode,
    load_state_dict,
    read_metadata,
    save_state_dict,
)


def pruned(shape: tuple[int, ...], sparsity: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.05
    w[w.abs() < w.abs().quantile(sparsity)] = 0
    return w


def mixed_state() -> dict[str, torch.Tensor]:
    weight = pruned((64, 48), 0.9)
    weight[1, 1] = float("nan")
    weight[2, 2] = float("-inf")
    return {
        "fc.weight": weight,
        "fc.bias": torch.randn(64),
        "conv.weight": pruned((8, 4, 3, 3), 0.8, seed=1),
        "fc.weight_mask": weight != 0,
        "bn.num_batches_tracked": torch.tensor(7),
        "ids": torch.tensor([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 9] * 20, dtype=torch.int16),
        "half": pruned((32, 32), 0.9, seed=2).half(),
        "bf": pruned((32, 32), 0.9, seed=3).bfloat16(),
        "double": pruned((40, 10), 0.95, seed=4).double(),
        "bytes": torch.tensor([0, 3, 0, 0] * 40, dtype=torch.uint8),
        "empty": torch.zeros(0, 5),
    }


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


@pytest.mark.parametrize("fmt", ["dense", "bitmask", "csr"])
def test_every_format_and_dtype_round_trips_bit_exactly(fmt: str) -> None:
    state = mixed_state()
    tensors, metadata = encode(state, fmt)
    decoded = decode(tensors, metadata)
    assert decoded.keys() == state.keys()
    for name, tensor in state.items():
        assert bit_equal(decoded[name], tensor), name


@pytest.mark.parametrize("values_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["bitmask", "csr"])
def test_narrow_values_are_lossy_only_within_their_precision(
    fmt: str, values_dtype: torch.dtype
) -> None:
    state = {"w": pruned((128, 64), 0.9), "ints": torch.arange(10), "m": torch.rand(9) > 0.5}
    decoded = decode(*encode(state, fmt, values_dtype))
    w, out = state["w"], decoded["w"]
    assert out.dtype == torch.float32
    assert torch.equal(out, w.to(values_dtype).float())  # exactly the rounded values
    assert torch.equal(out != 0, w != 0)
    assert torch.allclose(out, w, rtol=torch.finfo(values_dtype).eps, atol=0)
    assert torch.equal(decoded["ints"], state["ints"]) and torch.equal(decoded["m"], state["m"])


def test_negative_zeros_cost_nothing_and_come_back_as_zeros() -> None:
    w = pruned((128, 128), 0.9)
    signed = torch.where(w == 0, torch.full_like(w, -0.0), w)  # what `w * mask` leaves behind
    tensors, metadata = encode({"w": signed})
    assert tensors["w::values"].numel() == encode({"w": w})[0]["w::values"].numel()
    out = decode(tensors, metadata)["w"]
    assert torch.equal(out, signed) and not torch.signbit(out[out == 0]).any()


def test_layouts_are_chosen_only_where_smaller_than_dense() -> None:
    noise = torch.randint(-(2**31), 2**31 - 1, (256, 256), dtype=torch.int32)  # incompressible
    state = {"sparse": pruned((256, 256), 0.9), "dense": noise, "scalar": torch.tensor(1.0)}
    _, metadata = encode(state, "bitmask")
    index = json.loads(metadata["prunekit.storage.tensors"])
    assert index["sparse"]["layout"] == "bitmask"
    assert index["sparse"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert index["dense"]["layout"] == "dense" and index["scalar"]["layout"] == "dense"


@pytest.mark.parametrize(
    ("fmt", "values_dtype", "limit"),
    [("bitmask", None, 0.12), ("bitmask", torch.float16, 0.07), ("csr", None, 0.2)],
)
def test_file_size_at_90_percent_meets_the_targets(
    tmp_path: Path, fmt: str, values_dtype: torch.dtype | None, limit: float
) -> None:
    state = {"w1": pruned((512, 512), 0.9), "w2": pruned((256, 512), 0.9, seed=1)}
    dense = tmp_path / "dense.safetensors"
    save_file(state, str(dense))
    packed = save_state_dict(
        state, tmp_path / "packed.safetensors", format=fmt, values_dtype=values_dtype
    )
    assert packed.stat().st_size <= limit * dense.stat().st_size


def test_csr_uses_narrow_indices(tmp_path: Path) -> None:
    tensors, _ = encode({"w": pruned((300, 200), 0.5)}, "csr")
    # 200 columns fit in uint8, so the (raw or deflated) index part is at most 1 byte per non-zero
    assert tensors["w::indices"].numel() <= 300 * 100


def test_extra_metadata_rides_along_and_reserved_keys_are_refused(tmp_path: Path) -> None:
    path = save_state_dict(
        {"w": torch.ones(2)}, tmp_path / "m.safetensors", metadata={"prunekit.arch": "x"}
    )
    assert read_metadata(path)["prunekit.arch"] == "x"
    assert read_metadata(path)["prunekit.storage.version"] == "2"
    with pytest.raises(ValueError, match="reserved"):
        save_state_dict(
            {"w": torch.ones(2)}, tmp_path / "n.safetensors", metadata={"prunekit.storage.x": "1"}
        )


def test_plain_safetensors_files_load_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.arange(4.0)}, str(path))
    assert torch.equal(load_state_dict(path)["w"], torch.arange(4.0))


def test_bad_arguments_fail_with_the_fix() -> None:
    with pytest.raises(ValueError, match="format='coo'"):
        encode({"w": torch.ones(2)}, "coo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="values_dtype"):
        encode({"w": torch.ones(2)}, values_dtype=torch.int8)
    with pytest.raises(ValueError, match="bfloat16"):
        encode({"w": torch.tensor([1e6])}, values_dtype=torch.float16)
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        encode({"w": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="rename"):
        encode({"a::b": torch.ones(1)})


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return save_state_dict(mixed_state(), tmp_path / "model.sparse.safetensors")


def test_truncated_file_is_refused_naming_the_file(saved: Path) -> None:
    data = saved.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(StorageError, match="truncated") as err:
            load_state_dict(saved)
        assert str(saved) in str(err.value)


def test_flipped_payload_byte_fails_the_checks(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    for offset in range(header, len(data), max(1, (len(data) - header) // 25)):
        corrupted = bytearray(data)
        corrupted[offset] ^= 0x40
        saved.write_bytes(bytes(corrupted))
        with pytest.raises(StorageError) as err:
            load_state_dict(saved)
        assert str(saved) in str(err.value)


def test_flipped_header_byte_fails(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[9] ^= 0xFF  # inside the JSON header
    saved.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="corrupted"):
        load_state_dict(saved)


def test_mismatched_shapes_and_keys_are_refused(tmp_path: Path, saved: Path) -> None:
    tensors = load_file(str(saved))
    metadata = read_metadata(saved)
    wrong_shape = {**tensors, "fc.bias": torch.randn(63)}
    extra_key = {**tensors, "intruder": torch.zeros(1)}
    missing_key = {k: v for k, v in tensors.items() if k != "fc.weight::values"}
    for name, payload, message in [
        ("shape", wrong_shape, "metadata says"),
        ("extra", extra_key, "does not describe"),
        ("missing", missing_key, "fc.weight::values"),
    ]:
        path = tmp_path / f"{name}.safetensors"
        save_file(payload, str(path), metadata=metadata)
        with pytest.raises(StorageError, match=message):
            load_state_dict(path)


def test_tensors_swapped_between_files_fail_the_checksum(tmp_path: Path) -> None:
    a = {"w": pruned((64, 64), 0.9, seed=1)}
    b = {"w": pruned((64, 64), 0.9, seed=2)}
    tensors_b, _ = encode(b)
    _, metadata_a = encode(a)
    with pytest.raises(StorageError, match="checksum"):
        decode(tensors_b, metadata_a)


def test_pickle_is_refused_unless_trusted(tmp_path: Path) -> None:
    state = {"w": torch.arange(3.0)}
    zipped = tmp_path / "model.pt"
    torch.save(state, zipped)
    raw_pickle = tmp_path / "model.pkl"
    raw_pickle.write_bytes(pickle.dumps(state))
    for path in (zipped, raw_pickle):
        with pytest.raises(StorageError, match="trust_pickle=True") as err:
            load_state_dict(path)
        assert str(path) in str(err.value)
    assert torch.equal(load_state_dict(zipped, trust_pickle=True)["w"], state["w"])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_state_dict(tmp_path / "nope.safetensors")


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    path = save_state_dict({"w": torch.ones(3)}, tmp_path / "m.safetensors")
    with pytest.raises(TypeError):
        save_state_dict({"w": "not a tensor"}, path)  # type: ignore[dict-item]
    assert torch.equal(load_state_dict(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
