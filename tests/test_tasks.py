"""Task metrics, streamed over batches, checked against scikit-learn and the formulas."""

import doctest
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from prunekit import tasks
from prunekit.evaluate import evaluate_accuracy
from prunekit.tasks import TASKS, evaluate_task, get_task


def test_doctests() -> None:
    assert doctest.testmod(tasks).failed == 0


class Fixed(nn.Module):
    """Returns the prediction stored for each input index: any output we want to score."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.outputs[index.long().squeeze(1)]


def _indices(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32)[:, None]


def test_regression_metrics_equal_scikit_learn_across_batches() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(103, 3)) * [1.0, 5.0, 0.1]
    prediction = target + rng.normal(scale=0.3, size=target.shape)
    model = Fixed(torch.tensor(prediction, dtype=torch.float32))
    y = torch.tensor(target, dtype=torch.float32)
    scores = evaluate_task(model, _indices(103), y, task="regression", batch_size=10)
    assert list(scores) == ["r2", "mse", "mae", "loss"]
    p32, t32 = prediction.astype(np.float32), target.astype(np.float32)
    assert scores["r2"] == pytest.approx(r2_score(t32, p32), abs=1e-6)  # per column, averaged
    assert scores["mse"] == pytest.approx(mean_squared_error(t32, p32), rel=1e-5)
    assert scores["mae"] == pytest.approx(mean_absolute_error(t32, p32), rel=1e-5)
    assert scores["loss"] == pytest.approx(scores["mse"], rel=1e-5)  # mse is the default loss
    l1 = evaluate_task(model, _indices(103), y, task="regression", loss="l1")
    assert l1["loss"] == pytest.approx(scores["mae"], rel=1e-5)


def test_a_constant_column_follows_scikit_learns_r2_convention() -> None:
    y = torch.stack([torch.arange(6.0), torch.full((6,), 2.0)], dim=1)
    exact = evaluate_task(Fixed(y.clone()), _indices(6), y, task="regression")
    assert exact["r2"] == 1.0
    off = y.clone()
    off[:, 1] += 1.0
    assert evaluate_task(Fixed(off), _indices(6), y, task="regression")["r2"] == pytest.approx(0.5)


def test_psnr_uses_the_targets_range_as_peak() -> None:
    rng = np.random.default_rng(1)
    images = torch.tensor(rng.uniform(size=(20, 1, 4, 4)), dtype=torch.float32)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 0.0, 1.0  # range exactly 1
    noisy = images + 0.05 * torch.tensor(rng.normal(size=images.shape), dtype=torch.float32)
    model = Fixed(noisy)
    scores = evaluate_task(model, _indices(20), images, task="reconstruction", batch_size=7)
    mse = float(((noisy - images) ** 2).double().mean())
    assert scores["mse"] == pytest.approx(mse, rel=1e-5)
    assert scores["psnr"] == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-5)
    scaled = evaluate_task(Fixed(255 * noisy), _indices(20), 255 * images, task="reconstruction")
    assert scaled["psnr"] == pytest.approx(scores["psnr"], abs=1e-3)  # the same in 0..255
    perfect = evaluate_task(Fixed(images.clone()), _indices(20), images, task="reconstruction")
    assert perfect["psnr"] == math.inf and perfect["mse"] == 0.0


def test_bce_reconstruction_scores_the_sigmoid_of_the_logits() -> None:
    images = torch.rand(8, 1, 3, 3)
    logits = torch.logit(images.clamp(0.01, 0.99))
    scores = evaluate_task(Fixed(logits), _indices(8), images, task="reconstruction",
                           loss="bce_with_logits")
    assert scores["mse"] < 1e-4  # the prediction is sigmoid(logits), not the logits


def test_classification_accuracy_and_multilabel_decisions() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 1])
    scores = evaluate_task(Fixed(logits), _indices(4), labels, batch_size=3)
    assert scores == pytest.approx(
        {"accuracy": 0.75, "loss": float(nn.functional.cross_entropy(logits, labels))}
    )
    assert evaluate_accuracy(Fixed(logits), _indices(4), labels) == pytest.approx(scores)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    label_logits = torch.tensor([[3.0, -1.0, -2.0], [-4.0, 0.5, 2.0]])  # 4 of 6 decisions right
    multilabel = evaluate_task(Fixed(label_logits), _indices(2), targets, task="multilabel")
    assert multilabel["accuracy"] == pytest.approx(4 / 6)


def test_a_loss_that_does_not_fit_the_task_is_refused() -> None:
    with pytest.raises(ValueError, match="loss 'cross_entropy' does not fit a regression task"):
        get_task("regression").check_loss("cross_entropy")
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        get_task("ranking")
    assert get_task("classification").check_loss(lambda o, t: o.sum()).target == "any"
    assert all(task.default_loss == task.losses[0] for task in TASKS.values())


def test_evaluation_gives_back_each_submodules_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.Linear(4, 1))
    model[1].eval()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    first = evaluate_task(model, x, y, task="regression")
    assert [m.training for m in model] == [True, False, True] and model.training
    assert evaluate_task(model, x, y, task="regression") == first  # eval mode: deterministic
