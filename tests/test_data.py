from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.data import load_dataset, stratified_split


def test_mnist5k_is_the_shipped_subset_split_4000_1000_stratified() -> None:
    ds = load_dataset("mnist5k")
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert len(ds.x_train) == 4000 and len(ds.x_test) == 1000
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert ds.x_train.dtype == torch.float32


def test_split_is_deterministic_and_disjoint() -> None:
    y = np.repeat(np.arange(5), 40)
    a = stratified_split(y, 0.25, seed=3)
    b = stratified_split(y, 0.25, seed=3)
    c = stratified_split(y, 0.25, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == len(y)
    assert np.bincount(y[a[1]]).tolist() == [10] * 5


def test_digits_and_synthetic_shapes() -> None:
    digits = load_dataset("digits")
    assert digits.input_shape == (1, 8, 8)
    syn = load_dataset("synthetic", n_samples=400, n_features=12, num_classes=3)
    assert syn.input_shape == (12,) and syn.num_classes == 3
    again = load_dataset("synthetic", n_samples=400, n_features=12, num_classes=3)
    assert torch.equal(syn.x_train, again.x_train)


def test_npz_user_data(tmp_path: Path) -> None:
    file = tmp_path / "d.npz"
    np.savez(file, X=np.random.default_rng(0).normal(size=(50, 6)), y=np.arange(50) % 2)
    ds = load_dataset("npz", path=str(file))
    assert ds.input_shape == (6,) and len(ds.x_train) + len(ds.x_test) == 50


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((5, 2)), "y": np.zeros(4, dtype=int)}, "X has 5 samples but y has 4"),
        ({"X": np.zeros((4, 2))}, "lacks array"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(4)}, "integer class labels"),
        ({"X": np.array(["a", "b"]), "y": np.zeros(2, dtype=int)}, "X must be numeric"),
    ],
)
def test_npz_errors_name_the_problem(tmp_path: Path, arrays: dict, message: str) -> None:
    file = tmp_path / "bad.npz"
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", path=str(file))


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("npz", path="/nonexistent.npz")
    with pytest.raises(ValueError, match="choose one of"):
        load_dataset("cifar100")
