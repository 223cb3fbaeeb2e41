"""Modes given back per submodule, including when the block raises."""

import doctest

import pytest
from torch import nn

from prunekit import modes
from prunekit.modes import eval_mode, train_mode


def test_doctests() -> None:
    assert doctest.testmod(modes).failed == 0


def _mixed() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()), nn.Dropout())
    net[1][0].eval()  # a frozen BatchNorm inside a training model
    net[2].eval()
    return net


def _flags(net: nn.Module) -> list[bool]:
    return [m.training for m in net.modules()]


def test_eval_mode_restores_every_submodule_even_on_error() -> None:
    net = _mixed()
    before = _flags(net)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        assert not any(_flags(net))
        raise RuntimeError("boom")
    assert _flags(net) == before == [True, True, True, False, True, False]


def test_train_mode_keeps_a_frozen_submodule_frozen() -> None:
    net = _mixed()
    with train_mode(net):
        assert _flags(net) == [True, True, True, False, True, False]
    net.eval()
    with train_mode(net):
        assert all(_flags(net))  # a model in eval as a whole trains as a whole
    assert not any(_flags(net))
