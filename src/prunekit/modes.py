"""Train/eval mode, set for a measurement and given back to every submodule as it was.

Why: ``model.eval()`` followed by ``model.train(was_training)`` is the usual way to measure a
model, and it is wrong for models whose submodules are in *different* modes. ``train(True)``
sets every submodule to training, so a BatchNorm a user froze with ``bn.eval()`` starts updating
its running statistics again, and a dropout they turned off is back on, after nothing more than
an evaluation or an export. :func:`eval_mode` records each submodule's own flag and restores
exactly that, even when the block raises; :func:`train_mode` does the same around training and
keeps the submodules a user put in eval inside a training model in eval; :func:`restore_modes`
only gives the modes back, around work that sets them itself.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
>>> _ = net[1].eval()             # the user turned this dropout off on purpose
>>> with eval_mode(net):
...     net.training, net[1].training
(False, False)
>>> net.training, net[0].training, net[1].training
(True, True, False)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def restore_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Give every submodule its own mode back after the block, whatever the block set.

    Modes are recorded by submodule name, so a block that rewrites layers (structured pruning
    replaces a Conv2d with a smaller one) still gives each position its mode back.
    """
    modes = {name: module.training for name, module in model.named_modules()}
    try:
        yield model
    finally:
        for name, module in model.named_modules():  # parents first: each call's recursion is
            if name in modes:                          # undone below, and overridden ``train``
                module.train(modes[name])              # methods still run


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` and all its submodules in eval mode for the block; then restore each one."""
    with restore_modes(model):
        model.eval()
        yield model


@contextlib.contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Training mode for the block; then restore each submodule's own mode.

    A model in eval mode is switched to training as a whole. A model already training keeps its
    submodules as they are, so a BatchNorm frozen with ``bn.eval()`` stays frozen.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> _ = net[1].eval()
    >>> with train_mode(net):
    ...     net[0].training, net[1].training
    (True, False)
    >>> with train_mode(net.eval()):
    ...     net[1].training
    True
    >>> net.training
    False
    """
    with restore_modes(model):
        if not model.training:
            model.train()
        yield model
