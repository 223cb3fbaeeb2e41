"""explain() shows what prune_channels would do; prune_channels says out loud what it cannot."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.structured import explain, prune_channels


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.a(x))
        return self.b(h if h.sum() > 0 else -h)  # control flow on a value: fx cannot trace


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Untraceable()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


def test_a_wrapper_around_an_untraceable_model_says_why_nothing_was_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        report = prune_channels(Wrapper(), torch.randn(2, 4), ratio=0.5)
    assert report.removed == 0 and report.units == 0
    assert "found no removable unit" in report.warnings[0]
    assert "'inner' is kept whole: torch.fx cannot trace" in report.warnings[0]
    assert "found no removable unit" in caplog.text


def test_an_unreachable_macs_target_names_what_cannot_shrink() -> None:
    with pytest.raises(ValueError, match=r"what cannot shrink.*'inner'.*cannot trace"):
        prune_channels(Wrapper(), torch.randn(2, 4), max_macs=0.5)


class Pinned(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.mid, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 1), nn.Linear(24, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.relu(self.mid(F.relu(self.conv(x)))).view(-1, 24))  # literal size


def test_explain_lists_groups_scores_plan_and_pins_without_cutting() -> None:
    model = Pinned()
    view = explain(model, torch.randn(1, 3, 4, 4), ratio=0.5)
    assert [(g.modules, g.units, g.removed) for g in view.groups] == [(("conv",), 4, 2)]
    assert np.all(view.groups[0].scores > 0) and view.remove.sum() == 2
    mid = next(p for p in view.pinned if p.module == "mid")
    assert (mid.kept, mid.size) == (6, 6) and "literal size" in mid.reasons[0]
    assert any("'mid' are kept" in w for w in view.warnings)
    assert view.planned_macs < view.dense_macs and model.conv.out_channels == 4


def test_the_report_names_layers_kept_whole_and_modes_are_restored() -> None:
    model = nn.Sequential(Pinned(), nn.Dropout()).train()
    model[0].eval()
    report = prune_channels(model, torch.randn(1, 3, 4, 4), ratio=0.5)
    assert report.removed == 2 and any("'0.mid' are kept" in w for w in report.warnings)
    assert [m.training for m in (model, model[0], model[0].conv, model[1])] == [
        True, False, False, True]
