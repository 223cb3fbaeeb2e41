"""Pruning masks: one boolean buffer per pruned tensor, holding in any training loop.

The lifecycle fits in one breath: *prune → train → strip*.

- **prune** — :func:`set_mask` stores ``<name>_mask`` (bool, ``True`` = keep) as a buffer of the
  module and zeroes the pruned entries in place. Unlike ``torch.nn.utils.prune`` there is no
  second copy of the weight and no ``weight * mask`` in every forward: the weight itself holds
  the zeros, so a masked model runs exactly as fast as a dense one and is saved, loaded and
  checkpointed like any other module.
- **train, in any loop** — a plain ``loss.backward(); opt.step()``, Lightning, a Hugging Face
  Trainer or :func:`prunekit.train.fit`: nothing needs to be called. Each masked parameter has a
  gradient hook (``register_post_accumulate_grad_hook``) that multiplies its gradient by the
  mask as soon as backward has accumulated it, so gradient clipping, AMP's scaler and the
  optimizer never see the pruned entries; and one hook on every ``torch.optim`` step
  (``register_optimizer_step_post_hook``, registered once) multiplies the optimizer's masked
  parameters by their masks in one fused call and, when masks changed since that optimizer last
  stepped, zeroes their optimizer state (momentum, Adam moments), so nothing an optimizer
  remembers — nor one that mixes entries — can resurrect a weight. Masked modules are tracked
  weakly: a model that is dropped is forgotten. A deep copy of a masked model has fresh
  parameters: call :func:`hold_masks` on it (``fit`` does).
- **strip** — :func:`strip` removes every mask buffer and hook and leaves a plain ``nn.Module``
  whose weights hold exact zeros.

>>> net = nn.Linear(4, 2)
>>> set_mask(net, "weight", torch.tensor([[True, False, True, False]] * 2))
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
>>> for _ in range(3):
...     opt.zero_grad()
...     net(torch.randn(8, 4)).square().sum().backward()
...     opt.step()
>>> int(torch.count_nonzero(net.weight)), int(torch.count_nonzero(net.weight.grad))
(4, 4)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.hooks import RemovableHandle

MASK_SUFFIX = "_mask"

_generation = 0
"""Bumped on every mask change, so the step hook knows when to refresh its cached lists."""

_masked_modules: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_grad_hooks: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Tensor, RemovableHandle]]] = (
    weakref.WeakKeyDictionary()
)
_optimizers: weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[tuple[int, int], list]] = (
    weakref.WeakKeyDictionary()
)
_step_hook: RemovableHandle | None = None


def _changed() -> None:
    global _generation
    _generation += 1


def _mask_gradient(module_ref: weakref.ref[nn.Module], name: str) -> Callable[[Tensor], None]:
    """The gradient hook of ``module.<name>``: it reads the mask at each call, so a mask
    replaced or moved to another device is the one applied."""

    def hook(param: Tensor) -> None:
        module = module_ref()
        mask = None if module is None else module._buffers.get(name + MASK_SUFFIX)
        if mask is not None and param.grad is not None:
            param.grad.mul_(mask)

    return hook


def _hold(module: nn.Module, name: str) -> None:
    """Arm ``module.<name>``'s mask: its gradient hook, and the optimizer step hook."""
    global _step_hook
    _masked_modules.add(module)
    param = module._parameters.get(name)
    hooks = _grad_hooks.setdefault(module, {})
    held = hooks.get(name)
    if isinstance(param, nn.Parameter) and param.requires_grad and (
        held is None or held[0] is not param
    ):
        if held is not None:
            held[1].remove()
        handle = param.register_post_accumulate_grad_hook(_mask_gradient(weakref.ref(module), name))
        hooks[name] = (param, handle)
    if _step_hook is None:
        _step_hook = register_optimizer_step_post_hook(_after_step)


def set_mask(module: nn.Module, name: str, mask: Tensor) -> None:
    """Prune ``module.<name>`` where ``mask`` is False: store the mask and zero those entries.

    A mask replaces any earlier one; combine them first (``old & new``) to prune further.

    >>> layer = nn.Linear(4, 2)
    >>> set_mask(layer, "weight", torch.tensor([[True, False, True, False]] * 2))
    >>> int(torch.count_nonzero(layer.weight)), layer.weight_mask.dtype
    (4, torch.bool)
    """
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
    _hold(module, name)
    _changed()


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


def hold_masks(model: nn.Module) -> int:
    """Make every mask of ``model`` hold in any training loop; returns how many there are.

    :func:`set_mask` does this for the module it masks. Call it for a model whose masks came
    another way — a ``copy.deepcopy`` of a masked model (new parameters, no hooks), or mask
    buffers loaded into a fresh model. Zeroes the masked entries too.

    >>> import copy
    >>> net = nn.Linear(2, 2)
    >>> set_mask(net, "weight", torch.tensor([[True, False], [False, True]]))
    >>> hold_masks(copy.deepcopy(net))
    1
    """
    held = 0
    for _, module, name, tensor, mask in masked_tensors(model):
        with torch.no_grad():
            tensor.masked_fill_(~mask, 0.0)
        _hold(module, name)
        held += 1
    _changed()
    return held


def generation() -> int:
    """A counter that changes whenever any mask is set, held or stripped: a loop compares it
    before and after a callback to know whether pruning happened."""
    return _generation


def _masked_params(optimizer: torch.optim.Optimizer) -> list[tuple[weakref.ref, str]]:
    """The (module, name) of every masked parameter ``optimizer`` steps, cached until a mask
    changes or the optimizer gains parameters."""
    count = sum(len(group["params"]) for group in optimizer.param_groups)
    cached = _optimizers.get(optimizer)
    if cached is not None and cached[0] == (_generation, count):
        return cached[1]
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    entries = []
    for module in list(_masked_modules):
        for name in [b.removesuffix(MASK_SUFFIX) for b in module._buffers
                     if b.endswith(MASK_SUFFIX)]:
            if id(module._parameters.get(name)) in stepped:
                _hold(module, name)  # the parameter may have been replaced since
                entries.append((weakref.ref(module), name))
    _optimizers[optimizer] = ((_generation, count), entries)
    if cached is None or cached[0][0] != _generation:
        _clear_state(optimizer, zip(*_pairs(entries)))
    return entries


def _pairs(entries: list[tuple[weakref.ref, str]]) -> tuple[list[Tensor], list[Tensor]]:
    params, masks = [], []
    for module_ref, name in entries:
        module = module_ref()
        if module is None:
            continue
        param, mask = module._parameters.get(name), module._buffers.get(name + MASK_SUFFIX)
        if param is not None and mask is not None:
            params.append(param)
            masks.append(mask)
    return params, masks


@torch.no_grad()
def _clear_state(
    optimizer: torch.optim.Optimizer, pairs: Iterable[tuple[Tensor, Tensor]]
) -> None:
    """Zero every per-entry state tensor (momentum, moments) of ``optimizer`` under the masks."""
    for param, mask in pairs:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, Tensor) and value.shape == mask.shape:
                value.mul_(mask)


@torch.no_grad()
def _after_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    """After every ``torch.optim`` step: masked parameters × masks, in one fused call."""
    entries = _masked_params(optimizer)
    if entries:
        params, masks = _pairs(entries)
        if params:
            torch._foreach_mul_(params, masks)


def zero_pruned_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Zero the optimizer state (momentum, Adam moments) of every pruned entry of ``model``.

    The step hook does this by itself on the first step after masks change; call it to clear
    the state at once (before a step that should already see it clean).
    """
    _clear_state(optimizer, ((tensor, mask) for *_, tensor, mask in masked_tensors(model)))


class MaskEnforcement:
    """A ``fit`` callback that arms the model's masks and clears its optimizer's pruned state at
    the start of training; the masks then hold by themselves (see the module docstring).
    ``fit`` adds it to any model that holds masks; pruning callbacks build on it.

    >>> from prunekit.train import fit
    >>> net = nn.Linear(3, 2)
    >>> set_mask(net, "weight", torch.tensor([[True, False, True]] * 2))
    >>> _ = fit(net, torch.randn(8, 3), torch.zeros(8, dtype=torch.long), optimizer="sgd",
    ...         callbacks=[MaskEnforcement()], progress=False)
    >>> int(torch.count_nonzero(net.weight))
    4
    """

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        hold_masks(model)
        zero_pruned_state(optimizer, model)


def strip(model: nn.Module) -> nn.Module:
    """Make pruning permanent: zero masked entries, delete the masks and their hooks; returns
    ``model``.

    The result is an ordinary module: its ``state_dict()`` has the same keys as before pruning
    and loads into a fresh instance of the architecture.

    >>> net = nn.Linear(2, 2)
    >>> set_mask(net, "weight", torch.tensor([[True, False], [False, True]]))
    >>> sorted(strip(net).state_dict())
    ['bias', 'weight']
    """
    apply_masks(model)
    for _, module, name, _, _ in list(masked_tensors(model)):
        del module._buffers[name + MASK_SUFFIX]
        held = _grad_hooks.get(module, {}).pop(name, None)
        if held is not None:
            held[1].remove()
    _changed()
    return model
