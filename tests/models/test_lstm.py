from __future__ import annotations

import torch

from prunekit.models.lstm import LSTMClassifier


def test_images_are_read_as_row_sequences() -> None:
    model = LSTMClassifier(hidden_size=16).eval()
    images = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(images), model(images[:, 0]))


def test_classifies_from_the_last_step() -> None:
    model = LSTMClassifier(input_size=4, hidden_size=8, num_classes=3).eval()
    x = torch.rand(2, 5, 4)
    last = model.lstm(x)[0][:, -1]
    assert torch.equal(model(x), model.fc(last))
    assert model(x).shape == (2, 3)
