"""The uniform baseline: one ratio for every group, at no more than the chosen step's counted
cost and as close to it as one ratio gets, trained as the steps are."""

from __future__ import annotations

import torch

from prunekit.compress import Budget, Settings, compress
from prunekit.compress.run import validation_split
from prunekit.data import load_dataset
from prunekit.evaluate import count_params
from prunekit.models import build_model
from prunekit.train import fit


def test_uniform_is_one_ratio_at_the_chosen_steps_counted_cost() -> None:
    data = load_dataset("digits")
    (x_fit, y_fit), _ = validation_split(data, 0.2)
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(64, 64))
    fit(model, x_fit, y_fit, epochs=3, lr=0.01, progress=False)
    result = compress(model, data, Budget("params", 0.4), max_drop=5.0,
                      settings=Settings(steps=1, epochs=1, lr=0.01, latency_budget_s=0.5),
                      progress=False)
    chosen = next(r for r in result.rows if r["chosen"])
    uniform = next(r for r in result.rows if r["name"] == "uniform")
    net = result.models["uniform"]
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)][:2]
    assert widths[0] == widths[1] < 64  # both hidden groups lost the same share
    assert uniform["params"] == count_params(net)[0] <= chosen["params"]
    wider = widths[0] + 1  # one more unit per group would exceed the chosen step's count
    assert 64 * wider + wider + wider * wider + wider + wider * 10 + 10 > chosen["params"]
