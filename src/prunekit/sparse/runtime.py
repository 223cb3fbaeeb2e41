"""Swap a pruned model's layers to sparse kernels — only where they measure faster.

Why measure instead of guess: whether a sparse layer beats the dense BLAS depends on the
sparsity, the layer's shape, the batch, the cache sizes and the thread count, and a rule of
thumb is wrong somewhere. :func:`deploy` records each Linear/Conv2d layer's real input on
``example_input``, times the dense layer against the sparse kernel in a few layouts (the panel
width this machine's :func:`~prunekit.sparse.tuning.kernel_tuning` measured fastest for that
batch, or one panel; all threads or one; the machine's fastest kernel path) interleaved on the
same input, checks that the sparse output equals the dense one, and swaps the layer only when
the best layout is faster by ``min_speedup``. Last, the whole deployed model is timed against the original; if it is not
faster, the original layers are put back. So a deployed model is never slower than dense, up
to measurement noise.

Deployed layers are inference-only (see :mod:`prunekit.sparse.layers`).

>>> import torch
>>> from torch import nn
>>> from prunekit.sparse.nm import prune_nm
>>> from prunekit.masks import strip
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
>>> _ = prune_nm(model, 1, 8); _ = strip(model)
>>> from prunekit.sparse.kernels import default_kernel_path
>>> tuning = KernelTuning(path=default_kernel_path(), slice_bytes={1: None}, threads=2)
>>> deployed, decisions = deploy(model, torch.randn(4, 64), repeats=3, tuning=tuning)
>>> [d.name for d in decisions]
['0', '2']
>>> x = torch.randn(4, 64)
>>> with torch.inference_mode():
...     print(torch.allclose(deployed(x), model(x), atol=1e-4))
True
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from prunekit.latency import interleaved_medians, repeats_for
from prunekit.modes import eval_mode
from prunekit.sparse.kernels import kernel_library
from prunekit.sparse.layers import SparseConv2d, SparseLinear
from prunekit.sparse.tuning import KernelTuning, kernel_tuning

log = logging.getLogger(__name__)

SparseLayer = SparseLinear | SparseConv2d


@dataclass(frozen=True)
class LayerDecision:
    """What deploy measured for one layer and what it chose."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    sparsity: float
    dense_ms: float | None
    sparse_ms: float | None
    deployed: bool
    layout: str
    reason: str

    @property
    def speedup(self) -> float | None:
        """Dense time over the best sparse time, as measured (None if sparse was not tried)."""
        if self.dense_ms is None or not self.sparse_ms:
            return None
        return self.dense_ms / self.sparse_ms


def _candidate_widths(tuning: KernelTuning, cols: int, batch_columns: int) -> list[int | None]:
    """One panel, the tuned width for this batch, and half and twice that width.

    Why the neighbours: the tuning times one 512-row matrix, while the best width also depends
    on the layer's rows and density, and a width off by a factor of two costs: on a 2-core Xeon,
    4096² × 64 × 90 % took 2.13 / 1.85 / 1.87 / 1.97 ms in panels of 128 / 256 / 512 / 1024
    columns (interleaved medians, one run). Timing both neighbours on the real layer costs a
    few more calls and finds the layer's own optimum when the tuning is near it.
    """
    tuned = tuning.panel_width(cols, batch_columns)
    if tuned is None:
        return [None]
    neighbours = [tuned // 2 // 16 * 16, tuned, tuned * 2]
    return [None] + [w for w in dict.fromkeys(neighbours) if 16 <= w < cols]


def _batch_columns(module: nn.Module, x: Tensor) -> int:
    """How many columns the kernel's transposed activations will have for input ``x``."""
    if isinstance(module, nn.Linear):
        return x.numel() // max(1, module.in_features)
    kh, kw = module.kernel_size
    h, w = x.shape[-2:]
    out_h = (h + 2 * module.padding[0] - module.dilation[0] * (kh - 1) - 1) // module.stride[0] + 1
    out_w = (w + 2 * module.padding[1] - module.dilation[1] * (kw - 1) - 1) // module.stride[1] + 1
    return x.shape[0] * out_h * out_w


def _to_sparse(
    module: nn.Module, width: int | None, threads: int | None, path: str
) -> SparseLayer:
    if isinstance(module, nn.Linear):
        return SparseLinear.from_dense(module, panel_width=width, threads=threads, path=path)
    return SparseConv2d.from_dense(module, panel_width=width, threads=threads, path=path)


def _capture_inputs(model: nn.Module, example_input: Tensor) -> dict[str, Tensor]:
    inputs: dict[str, Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if type(module) in (nn.Linear, nn.Conv2d):

            def hook(mod: nn.Module, args: tuple, name: str = name) -> None:
                if args and isinstance(args[0], Tensor):
                    inputs.setdefault(name, args[0].detach().clone())

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def _close(a: Tensor, b: Tensor, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-5))


def _layout_name(path: str, width: int | None, threads: int | None) -> str:
    panel = "one panel" if width is None else f"panels of {width} columns"
    return f"CSR {path}, {panel}, {'all' if threads is None else threads} thread(s)"


def _sparsity(weight: Tensor) -> float:
    return 1.0 - int(torch.count_nonzero(weight)) / weight.numel()


def _dense_decision(name: str, module: nn.Module, x: Tensor, reason: str) -> LayerDecision:
    weight = module.weight.detach()
    return LayerDecision(
        name=name,
        kind=type(module).__name__,
        weight_shape=tuple(weight.shape),
        input_shape=tuple(x.shape),
        sparsity=_sparsity(weight),
        dense_ms=None,
        sparse_ms=None,
        deployed=False,
        layout="dense",
        reason=reason,
    )


def _decide(
    undecided: LayerDecision,
    module: nn.Module,
    x: Tensor,
    *,
    min_speedup: float,
    atol: float,
    budget_ms: float,
    repeats: int | None,
    tuning: KernelTuning,
) -> tuple[LayerDecision, SparseLayer | None]:
    with torch.inference_mode():
        reference = module(x)
        dense_ms = interleaved_medians({"dense": lambda: module(x)}, repeats=3)["dense"]
        widths = _candidate_widths(tuning, module.weight[0].numel(), _batch_columns(module, x))
        threads = [None] + ([1] if torch.get_num_threads() > 1 else [])
        layers = {(w, t): _to_sparse(module, w, t, tuning.path) for w in widths for t in threads}
        for key, layer in list(layers.items()):
            if not _close(layer(x), reference, atol):
                log.warning("sparse %s differs from dense beyond atol=%g", undecided.name, atol)
                del layers[key]
        if not layers:
            return replace(undecided, dense_ms=dense_ms, reason="sparse output differs"), None
        runs: dict[object, Callable[[], object]] = {"dense": lambda: module(x)}
        runs.update({key: (lambda layer=layer: layer(x)) for key, layer in layers.items()})
        # Each timed call follows an untimed one of the same layout: two calls per turn.
        rounds = repeats or repeats_for(2 * dense_ms * len(runs), budget_ms=budget_ms)
        medians = interleaved_medians(
            runs, repeats=rounds, untimed_per_turn=1  # type: ignore[arg-type]
        )
    dense_ms = medians.pop("dense")
    best = min(medians, key=medians.__getitem__)
    sparse_ms = medians[best]
    measured = replace(undecided, dense_ms=dense_ms, sparse_ms=sparse_ms)
    if sparse_ms * min_speedup > dense_ms:
        reason = f"sparse not faster by {min_speedup}x (best {dense_ms / sparse_ms:.2f}x)"
        return replace(measured, reason=reason), None
    layout = _layout_name(tuning.path, *best)  # type: ignore[misc]
    reason = f"sparse {dense_ms / sparse_ms:.2f}x faster"
    return replace(measured, deployed=True, layout=layout, reason=reason), layers[best]


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    """Put ``layer`` at ``name``, in the mode of the layer it replaces (deploy returns an eval
    model: a layer left in training mode would say otherwise to whoever checks)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    layer.train(getattr(parent, child).training)
    setattr(parent, child, layer)


def _why_dense(module: nn.Module, shared: bool, min_sparsity: float) -> str | None:
    """Why ``module`` is not even tried sparse, or None if it should be measured."""
    if type(module) is nn.Conv2d and not SparseConv2d.supports(module):
        return "grouped or non-zero-padded conv"
    if module.weight.dtype != torch.float32 or module.weight.device.type != "cpu":
        return "the kernel runs float32 on CPU only"
    if shared:
        return "module shared by several parents"
    if kernel_library() is None:
        return "sparse kernel not built"
    sparsity = _sparsity(module.weight.detach())
    if sparsity < min_sparsity:
        return f"sparsity {sparsity:.2f} below min_sparsity={min_sparsity}"
    return None


def deploy(
    model: nn.Module,
    example_input: Tensor,
    *,
    min_sparsity: float = 0.3,
    min_speedup: float = 1.05,
    atol: float = 1e-4,
    budget_ms: float = 300.0,
    repeats: int | None = None,
    check_end_to_end: bool = True,
    tuning: KernelTuning | None = None,
) -> tuple[nn.Module, list[LayerDecision]]:
    """A copy of ``model`` whose layers run sparse where that measured faster, and why.

    ``example_input`` should have the batch size and shape of real use: decisions hold for it.
    Layers below ``min_sparsity`` are not tried. ``budget_ms`` bounds the timing per layer
    (``repeats`` fixes the rounds instead). ``tuning`` defaults to this machine's cached
    :func:`~prunekit.sparse.tuning.kernel_tuning` for torch's thread count (measured on the
    first call, a second or two). The original ``model`` is left untouched; the
    layers that stay dense share its tensors (no second copy of the weights in memory, and
    exactly the same dense computation, so the deployed model cannot be slower there).
    """
    deployed = _sharing_copy(model)
    modules = dict(deployed.named_modules(remove_duplicate=False))
    parents = Counter(id(module) for module in modules.values())
    decisions: list[LayerDecision] = []
    for name, x in _capture_inputs(deployed, example_input).items():
        module = modules[name]
        reason = _why_dense(module, parents[id(module)] > 1, min_sparsity)
        undecided = _dense_decision(name, module, x, reason or "")
        if reason is not None:
            decisions.append(undecided)
            continue
        if tuning is None:
            tuning = kernel_tuning(torch.get_num_threads())
        decision, layer = _decide(
            undecided, module, x, min_speedup=min_speedup, atol=atol, budget_ms=budget_ms,
            repeats=repeats, tuning=tuning,
        )  # fmt: skip
        decisions.append(decision)
        if layer is not None:
            _replace(deployed, name, layer)
    swapped = any(d.deployed for d in decisions)
    if (
        swapped
        and check_end_to_end
        and not _faster_end_to_end(model, deployed, example_input, budget_ms)
    ):
        log.info("deployed model was not faster end to end; every layer stays dense")
        decisions = [_reverted(d) if d.deployed else d for d in decisions]
        deployed = _sharing_copy(model)
    return deployed, decisions


def _sharing_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree (so layers can be swapped) that shares every tensor."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared).eval()


def _faster_end_to_end(
    original: nn.Module, deployed: nn.Module, x: Tensor, budget_ms: float
) -> bool:
    """The whole-model safety net: small models take many rounds to rise above the noise."""
    runs = {"dense": lambda: original(x), "sparse": lambda: deployed(x)}
    with eval_mode(original), torch.inference_mode():
        scale = interleaved_medians(runs, repeats=3)
        rounds = repeats_for(2 * sum(scale.values()), budget_ms=budget_ms, low=9, high=201)
        medians = interleaved_medians(runs, repeats=rounds, untimed_per_turn=1)
    return medians["sparse"] <= medians["dense"]


def _reverted(decision: LayerDecision) -> LayerDecision:
    reason = decision.reason + "; reverted: the whole model was not faster"
    return replace(decision, deployed=False, layout="dense", reason=reason)


def decisions_table(decisions: list[LayerDecision]) -> str:
    """The decisions as a Markdown table, for logs, reports and the benchmarks.

    >>> print(decisions_table([]).splitlines()[0])
    | layer | kind | weight | input | sparsity | dense ms | sparse ms | speed-up | runs as |
    """
    lines = [
        "| layer | kind | weight | input | sparsity | dense ms | sparse ms | speed-up | runs as |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in decisions:
        dense = "-" if d.dense_ms is None else f"{d.dense_ms:.3f}"
        sparse = "-" if d.sparse_ms is None else f"{d.sparse_ms:.3f}"
        speedup = "-" if d.speedup is None else f"{d.speedup:.2f}x"
        runs_as = d.layout if d.deployed else f"dense ({d.reason})"
        lines.append(
            f"| {d.name} | {d.kind} | {'x'.join(map(str, d.weight_shape))} | "
            f"{'x'.join(map(str, d.input_shape))} | {d.sparsity:.1%} | {dense} | {sparse} | "
            f"{speedup} | {runs_as} |"
        )
    return "\n".join(lines)
