"""RNN, GRU, LSTM: every layer and direction pruned, MACs counted by hand, hidden and projected
units removed exactly."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from prunekit.evaluate import count_macs
from prunekit.layers import prunable_weights
from prunekit.sparse.nm import is_nm_sparse, prune_nm


def _hand_macs(kind: str, inputs: int, hidden: int, layers: int, directions: int, proj: int,
               steps: int) -> int:
    gates = {"LSTM": 4, "GRU": 3}.get(kind, 1)  # nn.RNN's mode is RNN_TANH / RNN_RELU
    recurrent = proj or hidden
    total = 0
    for layer in range(layers):
        width = inputs if layer == 0 else recurrent * directions
        total += directions * (gates * hidden * (width + recurrent) + proj * hidden)
    return steps * total


@pytest.mark.parametrize(("cls", "proj"), [(nn.LSTM, 0), (nn.LSTM, 3), (nn.GRU, 0), (nn.RNN, 0)])
def test_macs_match_the_hand_count(cls: type, proj: int) -> None:
    options = {"proj_size": proj} if proj else {}
    rnn = cls(5, 6, num_layers=2, bidirectional=True, **options)
    x = torch.zeros(7, 2, 5)  # (steps, batch, features)
    assert count_macs(rnn, x) == _hand_macs(rnn.mode, 5, 6, 2, 2, proj, 7 * 2)


def test_every_layer_and_direction_is_prunable() -> None:
    lstm = nn.LSTM(8, 8, num_layers=2, bidirectional=True, proj_size=4)
    names = {w.name for w in prunable_weights(lstm)}
    assert names == {f"weight_{k}_l{layer}{d}" for k in ("ih", "hh", "hr") for layer in (0, 1)
                     for d in ("", "_reverse")}
    prune_nm(lstm, 2, 4)
    assert all(is_nm_sparse(getattr(lstm, name), 2, 4) for name in names)


class Projected(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 8, num_layers=2, batch_first=True, proj_size=4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.lstm(x)[0][:, -1])


def test_hidden_and_projected_units_are_removed_exactly(exact_removal) -> None:
    before, after, graph = exact_removal(Projected(), torch.randn(2, 6, 5), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    lstm = graph.model.lstm
    assert (lstm.hidden_size, lstm.proj_size) == (4, 2)
    assert lstm.weight_hr_l1.shape == (2, 4) and lstm.weight_ih_l1.shape == (16, 2)
    assert graph.model.fc.in_features == 2
