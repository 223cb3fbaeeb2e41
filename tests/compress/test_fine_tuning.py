"""compress's fine-tuning callbacks inside a real fit: the model ends with the weights of the
epoch that scored best, and the rate falls from the optimiser's own to near zero."""

from __future__ import annotations

import copy

import torch

from prunekit.compress.fine_tuning import CosineDecay, KeepBestEpoch
from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.train import fit


def test_fit_ends_on_the_best_scored_epoch() -> None:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(16,))
    snapshots: list[dict] = []
    wanted = [0.2, 0.9, 0.4]  # epoch 1 is the best, the last is not

    def score(net: torch.nn.Module) -> float:
        snapshots.append(copy.deepcopy(net.state_dict()))
        return wanted[len(snapshots) - 1]

    keep = KeepBestEpoch(score)
    fit(model, data.x_train, data.y_train, epochs=3, lr=0.05, callbacks=[keep], progress=False)
    assert keep.best_epoch == 1 and keep.scores == wanted
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[2][k]) for k in final)


class _Rates:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_step_end(self, step, model, opt) -> None:
        self.seen.append(opt.param_groups[0]["lr"])


def test_the_rate_decays_from_the_given_one_to_near_zero_once() -> None:
    data = load_dataset("digits")
    model = build_model("mlp", in_features=64, hidden=(16,))
    rates = _Rates()
    steps = 2 * -(-len(data.x_train) // 64)
    fit(model, data.x_train, data.y_train, epochs=2, lr=0.01,
        callbacks=[CosineDecay(steps), rates], progress=False)
    assert len(rates.seen) == steps and rates.seen[0] == 0.01
    assert all(b < a for a, b in zip(rates.seen, rates.seen[1:]))
    assert rates.seen[-1] < 0.01 * 0.01  # the last step at under 1 % of the rate
