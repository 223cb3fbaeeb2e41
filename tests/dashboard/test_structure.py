"""The structure view: the same groups the pruner uses, the couplings, and why layers are pinned."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.dashboard.structure import describe_structure
from prunekit.structured import build_graph


class Residual(nn.Module):
    """stem → (conv, bn, relu, conv, bn) + skip → head: the add ties the stem to the block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1, self.bn1 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.conv2, self.bn2 = nn.Conv2d(12, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(x.mean((2, 3)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)
        self.b.weight = self.a.weight
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


def test_groups_are_the_pruners_and_show_what_they_couple() -> None:
    model, x = Residual().eval(), torch.randn(1, 3, 8, 8)
    view = describe_structure(model, x)
    graph = build_graph(model, x)
    assert [(g["index"], g["size"], tuple(g["modules"])) for g in view["groups"]] == [
        (g.index, g.size, g.modules) for g in graph.groups]
    residual = next(g for g in view["groups"] if "stem" in g["modules"])
    assert set(residual["modules"]) == {"stem", "conv2"}  # the add makes them one group
    coupled = {(c["module"], c["param"], c["role"]) for c in residual["couples"]}
    assert {("bn2", "weight", "norm"), ("conv1", "weight", "in"), ("head", "weight", "in")} <= coupled
    adds = [n["id"] for n in view["nodes"] if n["label"] == "add"]
    assert len(adds) == 1 and sorted(a for a, b in view["edges"] if b == adds[0]) == ["bn2", "stem"]
    assert residual["score"]["min"] <= residual["score"]["mean"] <= residual["score"]["max"]
    assert [p["module"] for p in view["pinned"]] == ["head"]
    assert view["pinned"][0]["reason"].startswith("reaches the model output")


def test_tied_and_ignored_layers_say_so() -> None:
    model, x = Tied().eval(), torch.randn(2, 6)
    reasons = {p["module"]: p["reason"] for p in describe_structure(model, x)["pinned"]}
    assert reasons["a"].startswith("shares its weights") and reasons["b"].startswith("shares its weights")
    ignored = describe_structure(Residual().eval(), torch.randn(1, 3, 8, 8), ignore=["conv1"])
    assert {p["module"]: p["reason"] for p in ignored["pinned"]}["conv1"] == "kept whole: it is in ignore"
