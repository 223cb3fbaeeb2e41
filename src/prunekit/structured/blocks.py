"""Layer and block removal: replace whole residual blocks (or shape-preserving layers) by identity.

Channel pruning makes layers thinner; on a deep ResNet, removing whole blocks makes it
*shallower*, which cuts latency more per MAC saved (fewer kernel launches, fewer memory-bound
BatchNorm/ReLU/add passes). A residual block computes ``y = x + f(x)`` (then perhaps a ReLU, a
no-op on the non-negative ``x``), so replacing it by ``nn.Identity`` removes exactly ``f``; the
blocks whose branch changes their input least, ``‖y − x‖ / ‖x‖`` over a few batches, go first.

Candidates are found in the traced graph: a submodule containing an ``add`` one of whose
operands is the submodule's own input (an identity shortcut). Pass ``candidates`` to choose other
shape-preserving layers yourself (for example a ``Linear(128, 128)`` in an MLP).

>>> import torch
>>> from prunekit.models import build_model
>>> model = build_model("resnet20")
>>> removed = remove_blocks(model, torch.randn(4, 3, 32, 32), count=2)
>>> len(removed), type(model.get_submodule(removed[0].name)).__name__
(2, 'Identity')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from prunekit.modes import eval_mode
from prunekit.structured.op_rules import op_name
from prunekit.structured.trace import trace_model


@dataclass(frozen=True)
class BlockScore:
    """A candidate block and how much it changes its input (relative L2)."""

    name: str
    change: float


def _stack(node: fx.Node) -> list[str]:
    if node.op == "call_module":
        return [*(node.meta.get("nn_module_stack") or {}), str(node.target)]
    return list(node.meta.get("nn_module_stack") or {})


def residual_blocks(model: nn.Module, example_input: Tensor) -> list[str]:
    """Submodules whose forward adds their own input to something (identity shortcuts)."""
    graph = trace_model(model, (example_input,)).module.graph
    found: list[str] = []
    for node in graph.nodes:
        if node.op not in ("call_function", "call_method") or op_name(node) != "add":
            continue
        operands = [a for a in node.args[:2] if isinstance(a, fx.Node)]
        if len(operands) != 2:
            continue
        for scope in reversed(_stack(node)):
            inside = [scope in _stack(a) for a in operands]
            if inside.count(False) == 1 and scope not in found:
                found.append(scope)
                break
    return found


def _relative_change(
    model: nn.Module, names: Sequence[str], batches: Sequence[Tensor]
) -> dict[str, float]:
    totals = dict.fromkeys(names, 0.0)
    shapes_ok = dict.fromkeys(names, True)

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0]
            if not isinstance(output, Tensor) or output.shape != x.shape:
                shapes_ok[name] = False
                return
            totals[name] += float((output - x).norm() / x.norm().clamp(min=1e-12))

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with eval_mode(model), torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    bad = [n for n in names if not shapes_ok[n]]
    if bad:
        raise ValueError(f"candidates {bad} change the shape of their input; only "
                         "shape-preserving blocks or layers can become nn.Identity")
    return {n: totals[n] / len(batches) for n in names}


def remove_blocks(
    model: nn.Module,
    example_input: Tensor,
    *,
    count: int,
    candidates: Sequence[str] | None = None,
    data: Sequence[Tensor] = (),
) -> list[BlockScore]:
    """Replace the ``count`` least useful blocks of ``model`` by ``nn.Identity``, in place.

    ``data`` (input batches) measures each block's change; ``example_input`` is used if empty.
    Returns the removed blocks with their scores, least useful first.
    """
    names = list(candidates) if candidates is not None else residual_blocks(model, example_input)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or not n]
    if unknown:
        raise ValueError(f"candidates {unknown} are not submodules of the model")
    if not 0 < count <= len(names):
        raise ValueError(f"count must be in 1..{len(names)} (the number of candidates), got {count}")
    scores = _relative_change(model, names, list(data) or [example_input])
    chosen = sorted(names, key=lambda n: scores[n])[:count]
    for name in chosen:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return [BlockScore(n, scores[n]) for n in chosen]
