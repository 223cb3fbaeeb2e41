"""A layer description registered once takes effect everywhere; subclasses inherit their base's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import prunekit
from prunekit.evaluate import count_macs, prunable_sparsity
from prunekit.export.allowlist import leaf_module_name, register_leaf_module
from prunekit.layers import LAYER_KINDS, LayerKind, Rebuild, kind_of, skipped_weights
from prunekit.sparse.nm import is_nm_sparse, prune_nm
from prunekit.structured import build_graph, prune_channels
from prunekit.unstructured import prune_by_ratio


class ScaledLinear(nn.Module):
    """A user's own layer: ``scale · (x Wᵀ) + b``, with the attributes a Linear has."""

    def __init__(self, in_features: int, out_features: int, scale: float = 2.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.scale = in_features, out_features, scale
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features**0.5)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.linear(x, self.weight, self.bias)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.head = ScaledLinear(8, 16), ScaledLinear(16, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.second(F.relu(self.first(x)))))


@pytest.fixture
def described(monkeypatch: pytest.MonkeyPatch) -> LayerKind:
    kind = dataclasses.replace(LAYER_KINDS[nn.Linear],
                               rebuild=Rebuild(("in_features", "out_features", "scale")))
    monkeypatch.setitem(LAYER_KINDS, ScaledLinear, kind)
    return kind


def test_an_undescribed_layer_is_reported_as_skipped() -> None:
    skipped = skipped_weights(Net())
    assert set(skipped) == {"first.weight", "second.weight"}
    assert "has no layer description" in skipped["first.weight"]


def test_a_description_reaches_unstructured_and_nm_pruning(described: LayerKind) -> None:
    net = Net()
    assert skipped_weights(net) == {}
    prune_by_ratio(net, 0.75, scope="layer")
    assert float((net.first.weight == 0).float().mean()) == pytest.approx(0.75)
    assert prunable_sparsity(net) == pytest.approx(0.75, abs=1e-3)
    fresh = Net()
    prune_nm(fresh, 2, 4)
    assert is_nm_sparse(fresh.second.weight, 2, 4)


def test_a_description_reaches_the_graph_the_rewrite_and_saving(
    described: LayerKind, exact_removal, tmp_path: Path
) -> None:
    graph = build_graph(Net(), torch.zeros(1, 8))
    assert {g.modules for g in graph.groups} == {("first",), ("second",)}
    before, after, graph = exact_removal(Net(), torch.randn(3, 8), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    net = graph.model
    assert (net.first.out_features, net.second.in_features) == (8, 8)
    path = prunekit.save(net.eval(), tmp_path / "net.safetensors")
    loaded = prunekit.load(path)
    assert type(loaded.get_submodule("first")) is ScaledLinear
    x = torch.randn(4, 8)
    torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0)


def test_hand_counted_macs_replace_what_the_counter_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = LayerKind(macs=lambda module, inputs, output: 1000)
    monkeypatch.setitem(LAYER_KINDS, ScaledLinear, kind)
    assert count_macs(Net(), torch.zeros(1, 8)) == 1000 + 1000 + 8 * 2


class SameConv(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (1, 1, 1, 1)))


class SubclassNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = SameConv(3, 8, 3), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.relu(self.conv(x)))


def test_a_subclass_is_pruned_as_its_base_but_saved_by_what_it_does(tmp_path: Path) -> None:
    net = SubclassNet().eval()
    assert kind_of(net.conv) is kind_of(nn.Conv2d(1, 1, 1))
    assert leaf_module_name(net.conv) is None  # its forward is its own: traced through
    report = prune_channels(net, torch.randn(1, 3, 6, 6), ratio=0.5)
    assert report.removed == 4 and net.conv.out_channels == 4
    x = torch.randn(2, 3, 6, 6)
    loaded = prunekit.load(prunekit.save(net, tmp_path / "sub.safetensors"))
    torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0)


def test_registering_a_leaf_keeps_what_the_class_inherits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAYER_KINDS, SameConv, LAYER_KINDS[nn.Conv2d])  # restored afterwards
    register_leaf_module("tests.SameConv", SameConv, ("in_channels", "out_channels",
                                                       "kernel_size"))
    kind = kind_of(SameConv(3, 8, 3))
    assert kind.propagate is LAYER_KINDS[nn.Conv2d].propagate
    assert leaf_module_name(SameConv(3, 8, 3)) == "tests.SameConv"
