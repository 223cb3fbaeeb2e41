"""A small trained model shared by the compress tests (trained once per module)."""

from __future__ import annotations

import pytest
import torch

from prunekit.compress.session import validation_split
from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.train import fit


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    (x_fit, y_fit), _ = validation_split(data, 0.2)
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(48, 32))
    fit(model, x_fit, y_fit, epochs=4, lr=0.01, progress=False)
    return model.eval(), data
