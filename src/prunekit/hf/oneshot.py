"""One-shot pruning of a whole HF transformer with calibration data: magnitude, Wanda, SparseGPT.

Layer by layer: the first layer's inputs are caught once (:mod:`prunekit.hf.layerwise`); each
layer then runs on the outputs of the layers already pruned, its Linear layers' input
statistics are gathered on that run (squared norms for Wanda, the Hessian ``XᵀX`` for
SparseGPT), its weights are pruned, and it runs again, pruned, to give the next layer its
inputs. Every Linear inside the transformer layers is pruned (attention and MLP projections);
embeddings, the LM head and classifier heads are kept dense, as in the papers. The zeros are
in place: the result is the same HF model class, loadable and savable as before.

``allocation="owl"`` first walks the dense model once to measure each layer's outlier ratio and
gives layers with more outliers a lower sparsity (:mod:`prunekit.hf.allocation`).

>>> import torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50)).eval()
>>> batches = [{"input_ids": torch.randint(0, 50, (4, 16))}]
>>> report = prune_oneshot(model, batches, method="sparsegpt", sparsity=0.5, progress=False)
>>> report.sparsity
0.5
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from prunekit.hf.allocation import ALLOCATIONS, outlier_ratio, owl_sparsities
from prunekit.hf.architectures import decoder_layers, linear_layers, weight_rows
from prunekit.hf.layerwise import Batch, LayerInputs, capture_layer_inputs, run_layer
from prunekit.hf.row_pruning import Target, row_keep_mask, wanda_scores
from prunekit.hf.sparsegpt import sparsegpt_prune
from prunekit.modes import eval_mode
from prunekit.progress import progress_bar

log = logging.getLogger(__name__)

METHODS = ("magnitude", "wanda", "sparsegpt")


@dataclass
class OneShotReport:
    """What :func:`prune_oneshot` did: per-layer sparsity of every pruned weight."""

    method: str
    target: str
    allocation: str
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    layer_targets: list[float] = field(default_factory=list)
    pruned: int = 0
    total: int = 0
    seconds: float = 0.0

    @property
    def sparsity(self) -> float:
        """Zeros over all weights of the pruned Linear layers."""
        return self.pruned / self.total if self.total else 0.0


class _LastInput:
    """The statistics of the most recent input tensor seen by any Linear of a layer.

    Why: attention's query, key and value projections (and a gated MLP's gate and up) are
    called one after another on the *same* tensor; their ``Σ x²`` and ``XᵀX`` are equal, and
    the Gram matrix is the costliest part of SparseGPT's calibration. Holding the last tensor
    (compared by identity, so a new tensor that reuses freed memory is never mistaken for it)
    computes each one once.
    """

    def __init__(self) -> None:
        self.tensor: Tensor | None = None
        self.squares: Tensor | None = None
        self.gram: Tensor | None = None

    def statistics(self, x: Tensor, hessian: bool) -> tuple[Tensor, Tensor | None]:
        if x is not self.tensor or (hessian and self.gram is None):
            flat = x.detach().reshape(-1, x.shape[-1]).float()
            self.tensor = x
            self.squares = flat.double().square().sum(dim=0)
            # fp32 products (as the reference implementation), summed over batches in fp64
            self.gram = (flat.T @ flat).double() if hessian else None
        return self.squares, self.gram


class _InputStatistics:
    """Sums over calibration tokens of one Linear's inputs: ``Σ x²`` per feature, and ``Σ xxᵀ``
    when a Hessian is needed."""

    def __init__(self, module: nn.Module, hessian: bool, last: _LastInput | None = None) -> None:
        features = weight_rows(module).shape[1]
        self.squares = torch.zeros(features, dtype=torch.float64)
        self.gram = torch.zeros(features, features, dtype=torch.float64) if hessian else None
        self.tokens = 0
        self.last = last or _LastInput()
        self.handle = module.register_forward_pre_hook(self._add)

    def _add(self, _module: nn.Module, args: tuple[Tensor, ...]) -> None:
        squares, gram = self.last.statistics(args[0], self.gram is not None)
        self.squares += squares
        if self.gram is not None:
            self.gram += gram
        self.tokens += args[0].numel() // args[0].shape[-1]

    def input_norms(self) -> Tensor:
        return self.squares.sqrt()

    def hessian(self) -> Tensor:
        return self.gram * (2.0 / max(self.tokens, 1))


def _gather(
    layer: nn.Module, inputs: LayerInputs, hessian: bool
) -> tuple[dict[str, _InputStatistics], list[Tensor]]:
    """Run ``layer`` once with hooks on its Linear layers; statistics and the layer's outputs."""
    last = _LastInput()
    stats = {name: _InputStatistics(m, hessian, last) for name, m in linear_layers(layer).items()}
    try:
        outputs = run_layer(layer, inputs)
    finally:
        for s in stats.values():
            s.handle.remove()
    return stats, outputs


def _targets(
    model: nn.Module, batches: Sequence[Batch], base: Target, allocation: str, strength: float
) -> list[Target]:
    layers = decoder_layers(model)
    if allocation == "uniform":
        return [base] * len(layers)
    inputs = capture_layer_inputs(model, batches)
    ratios = []
    for layer in layers:
        stats, outputs = _gather(layer, inputs, hessian=False)
        scores = [
            wanda_scores(weight_rows(m), stats[name].input_norms())
            for name, m in linear_layers(layer).items()
        ]
        ratios.append(outlier_ratio(scores))
        inputs = inputs.with_hidden(outputs)
    return [Target(sparsity=s) for s in owl_sparsities(ratios, base.sparsity, strength=strength)]


def _prune_weight(
    module: nn.Module, method: str, target: Target, stats: _InputStatistics | None,
    block_size: int, damping: float,
) -> None:  # fmt: skip
    rows = weight_rows(module)
    if method == "sparsegpt":
        pruned = sparsegpt_prune(
            rows, stats.hessian(), target, block_size=block_size, damping=damping
        )
        rows.copy_(pruned)
        return
    scores = rows.abs() if method == "magnitude" else wanda_scores(rows, stats.input_norms())
    rows.mul_(row_keep_mask(scores, target))


def check_options(
    method: str, sparsity: float | None, nm: tuple[int, int] | None, allocation: str
) -> Target:
    """The target of a one-shot run, or an error naming the bad option (before any work)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation {allocation!r} is not one of {ALLOCATIONS}")
    target = Target(n=nm[0], m=nm[1]) if nm else Target(sparsity=sparsity)
    if target.is_nm and allocation != "uniform":
        raise ValueError("allocation='owl' varies sparsity per layer, which N:M cannot; use uniform")
    return target


@torch.no_grad()
def prune_oneshot(
    model: nn.Module,
    batches: Sequence[Batch],
    *,
    method: str = "wanda",
    sparsity: float | None = None,
    nm: tuple[int, int] | None = None,
    allocation: str = "uniform",
    owl_strength: float = 0.08,
    block_size: int = 128,
    damping: float = 0.01,
    progress: bool = True,
) -> OneShotReport:
    """Prune every Linear in ``model``'s transformer layers in place, one layer at a time.

    ``batches`` are keyword inputs for the model (``input_ids``, ``attention_mask`` …; for
    magnitude they are not used). Give ``sparsity`` (unstructured) or ``nm=(n, m)``.
    """
    base = check_options(method, sparsity, nm, allocation)
    start = time.perf_counter()
    with eval_mode(model):
        layers = decoder_layers(model)
        targets = _targets(model, batches, base, allocation, owl_strength)
        report = OneShotReport(method, str(base), allocation,
                               layer_targets=[t.fraction for t in targets])
        inputs = None if method == "magnitude" else capture_layer_inputs(model, batches)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"{method} {base}", total=len(layers))
            for index, (layer, target) in enumerate(zip(layers, targets)):
                stats = {}
                if inputs is not None:
                    stats, _ = _gather(layer, inputs, hessian=method == "sparsegpt")
                for name, module in linear_layers(layer).items():
                    _prune_weight(module, method, target, stats.get(name), block_size, damping)
                    rows = weight_rows(module)
                    zeros = int((rows == 0).sum())
                    report.layer_sparsity[f"{index}.{name}"] = zeros / rows.numel()
                    report.pruned += zeros
                    report.total += rows.numel()
                if inputs is not None and index + 1 < len(layers):
                    inputs = inputs.with_hidden(run_layer(layer, inputs))
                bar.update(task, advance=1)
    report.seconds = time.perf_counter() - start
    log.info("%s %s: %.1f%% of %d weights pruned in %.1fs", method, base,
             100 * report.sparsity, report.total, report.seconds)  # fmt: skip
    return report
