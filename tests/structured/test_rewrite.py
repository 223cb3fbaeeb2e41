"""Removing units whose weights are all zero leaves every zoo model's outputs identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.models import build_model
from prunekit.structured.graph import build_graph
from prunekit.structured.rewrite import RewriteError, remove_units

ZOO = {
    "mlp": (2, 784),
    "lenet300": (2, 784),
    "lenet5": (2, 1, 28, 28),
    "vgg11": (2, 3, 32, 32),
    "vgg16": (2, 3, 32, 32),
    "resnet20": (2, 3, 32, 32),
    "resnet56": (2, 3, 16, 16),
    "resnet18": (2, 3, 64, 64),
    "resnet50": (2, 3, 64, 64),
    "mobilenet_v2": (2, 3, 64, 64),
    "autoencoder": (2, 1, 28, 28),
    "lstm": (2, 1, 28, 28),
    "tiny_transformer": (2, 1, 28, 28),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_zeroed_units_removed_exactly(name: str, exact_removal) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    params_before = sum(p.numel() for p in model.parameters())
    x = torch.randn(*ZOO[name])
    before, after, graph = exact_removal(model, x, fraction=0.3)
    assert graph.num_units > 0
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in model.parameters()) < params_before


def test_result_is_plain_module_whose_state_dict_loads_into_same_classes() -> None:
    model = build_model("resnet20")
    x = torch.randn(1, 3, 32, 32)
    graph = build_graph(model, x)
    remove = np.zeros(graph.num_units, dtype=bool)
    remove[graph.groups[1].units[:5]] = True
    remove_units(graph, remove, x)
    assert type(model.layer1[0].conv1) is nn.Conv2d
    assert model.layer1[0].conv1.out_channels == 11
    assert model.layer1[0].bn1.running_mean.shape == (11,)
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    clone = build_model("resnet20")
    clone.layer1[0].conv1 = nn.Conv2d(16, 11, 3, padding=1, bias=False)
    clone.layer1[0].bn1 = nn.BatchNorm2d(11)
    clone.layer1[0].conv2 = nn.Conv2d(11, 16, 3, padding=1, bias=False)
    clone.load_state_dict(model.state_dict())


class Stale(nn.Module):
    """Its forward reshapes with a size read from another tensor: pruning cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 2)
        self.reference = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        width = self.reference(x).size(-1)
        return self.b(h.reshape(x.size(0), width))


def test_failed_check_restores_the_model() -> None:
    model = Stale()
    x = torch.randn(2, 4)
    expected = model(x)
    graph = build_graph(model, x)
    remove = np.zeros(graph.num_units, dtype=bool)
    remove[graph.units_of(np.unique(graph.axes["a"]["out"]))[:2]] = True
    with pytest.raises(RewriteError, match="restored"):
        remove_units(graph, remove, x)
    assert model.a.out_features == 6 and model.a.weight.shape == (6, 4)
    torch.testing.assert_close(model(x), expected)
