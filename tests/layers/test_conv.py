"""Transposed and grouped convolutions: MACs as counted by hand, units removed exactly, N:M along
the dim a transposed conv sums over."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.evaluate import count_macs
from prunekit.sparse.nm import is_nm_sparse, prune_nm
from prunekit.structured.graph import build_graph
from prunekit.structured.prune import estimate_macs


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(8, 8, 3, stride=2, groups=4)
        self.out = nn.Conv3d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.up2(torch.relu(self.up1(x)))).unsqueeze(2))


def test_macs_of_transposed_convs_match_the_hand_count() -> None:
    x = torch.zeros(2, 4, 5, 5)
    # every input element meets out/groups · k² weights; up2's input is 10×10, its output 21×21
    hand = 2 * (4 * 25 * 8 * 9 + 8 * 100 * 2 * 9 + 2 * 8 * 21 * 21)
    assert count_macs(Decoder(), x) == hand
    graph = build_graph(Decoder(), x)
    assert estimate_macs(graph, np.zeros(graph.num_units, dtype=bool)) == hand


def test_grouped_transposed_units_are_whole_groups(exact_removal) -> None:
    before, after, graph = exact_removal(Decoder(), torch.randn(2, 4, 5, 5), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    up2 = graph.model.up2
    assert up2.in_channels == up2.out_channels == 2 * up2.groups
    assert graph.model.up1.out_channels == up2.in_channels


def test_nm_blocks_run_along_the_inputs_of_a_transposed_conv() -> None:
    layer = nn.ConvTranspose2d(8, 3, 3)  # weight (in=8, out=3, 3, 3): only dim 0 can block
    assert prune_nm(layer, 2, 4) == {"weight": 0.5}
    assert is_nm_sparse(layer.weight, 2, 4, dim=0)
