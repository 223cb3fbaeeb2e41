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
        ({"X": np.zeros((2, 2)), "y": np.array(["a", "b"])}, "y must hold integer class labels"),
        ({"X": np.zeros((4, 2)), "y": np.full((4, 2), 2)}, "0/1 labels per sample"),
        ({"X": np.zeros((4, 2)), "y": np.array([0.0, 1.0, np.nan, 2.0])}, "NaN or infinite"),
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


def test_the_targets_decide_the_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    cases = {
        "regression": rng.normal(size=40),
        "multilabel": rng.integers(0, 2, size=(40, 4)),
        "classification": np.arange(40) % 4,
    }
    for task, y in cases.items():
        file = tmp_path / f"{task}.npz"
        np.savez(file, X=x, y=y)
        ds = load_dataset("npz", path=str(file), test_fraction=0.2)
        assert ds.task == task
        assert len(ds.x_train) == 32 and len(ds.x_test) == 8
    regression = load_dataset("npz", path=str(tmp_path / "regression.npz"))
    assert regression.y_train.dtype == torch.float32 and regression.y_train.shape[1:] == (1,)
    assert regression.num_classes == 0
    multilabel = load_dataset("npz", path=str(tmp_path / "multilabel.npz"))
    assert multilabel.y_train.dtype == torch.float32 and multilabel.num_classes == 4


def test_regression_split_is_seeded_and_keeps_pairs_together(tmp_path: Path) -> None:
    x = np.arange(50, dtype=float)[:, None]
    np.savez(tmp_path / "r.npz", X=x, y=2.0 * x[:, 0] + 1.0)
    a = load_dataset("npz", path=str(tmp_path / "r.npz"), seed=1)
    b = load_dataset("npz", path=str(tmp_path / "r.npz"), seed=1)
    c = load_dataset("npz", path=str(tmp_path / "r.npz"), seed=2)
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)
    torch.testing.assert_close(a.y_train, 2.0 * a.x_train + 1.0)  # rows stay paired
    assert set(a.x_train[:, 0].tolist()).isdisjoint(a.x_test[:, 0].tolist())


def test_target_input_makes_an_autoencoder_task() -> None:
    ds = load_dataset("digits", target="input")
    assert ds.task == "reconstruction" and ds.num_classes == 0
    assert ds.y_train is ds.x_train and ds.y_test is ds.x_test
    labelled = load_dataset("digits")
    assert torch.equal(ds.x_test, labelled.x_test)  # the same split as the classifier's
    with pytest.raises(ValueError, match="target='labels'"):
        load_dataset("digits", target="labels")  # type: ignore[arg-type]


def test_seed_regression_is_learnable_from_its_informative_features() -> None:
    ds = load_dataset("seed_regression")
    assert ds.task == "regression" and ds.input_shape == (10,)
    assert len(ds.x_train) == 800 and len(ds.x_test) == 200
    assert ds.y_train.shape == (800, 1)
    again = load_dataset("seed_regression")
    assert torch.equal(ds.y_test, again.y_test)
    # unit-variance signal + noise 0.2: the target's variance is about 1.04
    assert 0.85 < float(torch.cat([ds.y_train, ds.y_test]).var()) < 1.25
    # a least-squares fit on the distractor features alone explains almost nothing
    x, y = ds.x_train[:, 5:].double(), ds.y_train.double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    residual = y - design @ torch.linalg.lstsq(design, y).solution
    assert float(1 - residual.var() / y.var()) < 0.05
