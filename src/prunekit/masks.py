"""Pruning masks: one boolean buffer per pruned tensor, enforced cheaply while training.

The lifecycle fits in one breath: *prune → train → strip*.

- **prune** — :func:`set_mask` stores ``<name>_mask`` (bool, ``True`` = keep) as a buffer of the
  module and zeroes the pruned entries in place. Unlike ``torch.nn.utils.prune`` there is no
  second copy of the weight and no ``weight * mask`` in every forward: the weight itself holds
  the zeros, so a masked model runs exactly as fast as a dense one and is saved, loaded and
  checkpointed like any other module.
- **train** — :class:`MaskEnforcement` (added by :func:`prunekit.train.fit` automatically when a
  model holds masks) multiplies the *gradients* by the masks before every optimizer step, in one
  fused ``torch._foreach_mul_``. For element-wise optimizers (SGD with momentum or Nesterov,
  Adam, AdamW, with or without weight decay) a zero gradient on a zero weight whose optimizer
  state is zero gives a zero update, so nothing resurrects; the state of newly pruned entries is
  zeroed once, when a mask changes (:func:`zero_pruned_state`).
- **strip** — :func:`strip` removes every mask buffer and leaves a plain ``nn.Module`` whose
  weights hold exact zeros.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

MASK_SUFFIX = "_mask"

_generation = 0
"""Bumped on every mask change, so enforcement knows when to refresh its cached tensor lists."""


def mask_generation() -> int:
    """A counter that changes whenever any mask is set or removed."""
    return _generation


def set_mask(module: nn.Module, name: str, mask: Tensor) -> None:
    """Prune ``module.<name>`` where ``mask`` is False: store the mask and zero those entries.

    A mask replaces any earlier one; combine them first (``old & new``) to prune further.

    >>> layer = nn.Linear(4, 2)
    >>> set_mask(layer, "weight", torch.tensor([[True, False, True, False]] * 2))
    >>> int(torch.count_nonzero(layer.weight)), layer.weight_mask.dtype
    (4, torch.bool)
    """
    global _generation
    param = module._parameters.get(name, module._buffers.get(name))
    if param is None:
        raise ValueError(f"{type(module).__name__} has no tensor {name!r} to mask")
    if mask.shape != param.shape:
        raise ValueError(
            f"mask for {type(module).__name__}.{name} has shape {tuple(mask.shape)}, "
            f"but the tensor has {tuple(param.shape)}; build the mask from the tensor itself"
        )
    mask = mask.to(device=param.device, dtype=torch.bool)
    buffer = name + MASK_SUFFIX
    if buffer in module._buffers:
        module._buffers[buffer] = mask
    else:
        module.register_buffer(buffer, mask)
    with torch.no_grad():
        param.masked_fill_(~mask, 0.0)  # +0.0: a product with False leaves -0.0 behind
    _generation += 1


def get_mask(module: nn.Module, name: str = "weight") -> Tensor | None:
    """The mask of ``module.<name>``, or None if it is not pruned."""
    return module._buffers.get(name + MASK_SUFFIX)


def masked_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, Tensor, Tensor]]:
    """Every masked tensor: (module name, module, tensor name, tensor, mask)."""
    for module_name, module in model.named_modules():
        for buffer_name, mask in list(module._buffers.items()):
            if mask is None or not buffer_name.endswith(MASK_SUFFIX):
                continue
            name = buffer_name.removesuffix(MASK_SUFFIX)
            # only masks over real parameters or buffers are ours: torch.nn.utils.prune also
            # names its masks "<name>_mask", but its "<name>" is a computed tensor
            tensor = module._parameters.get(name, module._buffers.get(name))
            if tensor is not None:
                yield module_name, module, name, tensor, mask


def has_masks(model: nn.Module) -> bool:
    """True if any tensor of ``model`` is pruned by a mask."""
    return next(masked_tensors(model), None) is not None


@torch.no_grad()
def apply_masks(model: nn.Module) -> None:
    """Zero every masked entry in place (after weights were changed behind the masks' back).

    The zeros are +0.0, so compressed storage sees them as zeros (a multiply would leave -0.0).
    """
    for *_, tensor, mask in masked_tensors(model):
        tensor.masked_fill_(~mask, 0.0)


@torch.no_grad()
def zero_pruned_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Zero the optimizer state (momentum, Adam moments) of every pruned entry.

    Called whenever masks change during training, so that a pruned weight's momentum cannot
    move it again.
    """
    for *_, tensor, mask in masked_tensors(model):
        for value in optimizer.state.get(tensor, {}).values():
            if isinstance(value, Tensor) and value.shape == mask.shape:
                value.mul_(mask)


class MaskEnforcement:
    """A ``fit`` callback that keeps pruned weights at exactly zero, at the cost of one fused
    multiply over the masked gradients per step.

    >>> from prunekit.train import fit
    >>> net = nn.Linear(3, 2)
    >>> set_mask(net, "weight", torch.tensor([[True, False, True]] * 2))
    >>> _ = fit(net, torch.randn(8, 3), torch.zeros(8, dtype=torch.long), optimizer="sgd",
    ...         callbacks=[MaskEnforcement()], progress=False)
    >>> int(torch.count_nonzero(net.weight))
    4
    """

    def __init__(self) -> None:
        self._cached_generation = -1
        self._params: list[Tensor] = []
        self._masks: list[Tensor] = []

    def _refresh(self, model: nn.Module) -> None:
        if self._cached_generation == _generation:
            return
        items = [(t, m) for *_, t, m in masked_tensors(model) if t.requires_grad]
        self._params = [t for t, _ in items]
        self._masks = [m for _, m in items]
        self._cached_generation = _generation

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        apply_masks(model)
        zero_pruned_state(optimizer, model)
        self._refresh(model)

    def on_before_step(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._refresh(model)
        grads = [p.grad for p in self._params]
        if self._params and all(g is not None for g in grads):
            torch._foreach_mul_(grads, self._masks)
        else:
            for param, mask in zip(self._params, self._masks):
                if param.grad is not None:
                    param.grad.mul_(mask)


def strip(model: nn.Module) -> nn.Module:
    """Make pruning permanent: zero masked entries, delete the masks; returns ``model``.

    The result is an ordinary module: its ``state_dict()`` has the same keys as before pruning
    and loads into a fresh instance of the architecture.

    >>> net = nn.Linear(2, 2)
    >>> set_mask(net, "weight", torch.tensor([[True, False], [False, True]]))
    >>> sorted(strip(net).state_dict())
    ['bias', 'weight']
    """
    global _generation
    apply_masks(model)
    for _, module, name, _, _ in list(masked_tensors(model)):
        del module._buffers[name + MASK_SUFFIX]
    _generation += 1
    return model
