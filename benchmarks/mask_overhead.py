"""What a pruning mask costs while training: step time of a 90 %-masked model over a dense one.

prunekit keeps the zeros in the weight itself and multiplies only the gradients by the mask, in
one fused call per step; ``torch.nn.utils.prune`` keeps a second copy of every weight and
recomputes ``weight_orig * mask`` in every forward (and its backward). Both models train with
the same data, optimizer and seed; epochs of each are timed round-robin and medians compared.

    .venv/bin/python benchmarks/mask_overhead.py            # full run
    .venv/bin/python benchmarks/mask_overhead.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.utils.prune as torch_prune
from common import print_table, write_results
from torch import nn

from prunekit.latency import interleaved_medians
from prunekit.models import build_model
from prunekit.train import fit
from prunekit.unstructured import prunable_layers, prune_by_ratio

SPARSITY = 0.9


def _torch_pruned(model: nn.Module) -> nn.Module:
    pruned = copy.deepcopy(model)
    targets = [(module, "weight") for _, module in prunable_layers(pruned)]
    torch_prune.global_unstructured(
        targets, pruning_method=torch_prune.L1Unstructured, amount=SPARSITY
    )
    return pruned


def _prunekit_pruned(model: nn.Module) -> nn.Module:
    pruned = copy.deepcopy(model)
    prune_by_ratio(pruned, SPARSITY, scope="global")
    return pruned


def measure(name: str, model: nn.Module, shape: tuple[int, ...], steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    batch = 64
    x = torch.randn(batch * steps, *shape)
    y = torch.randint(0, 10, (batch * steps,))
    variants = {"dense": model, "prunekit": _prunekit_pruned(model), "torch": _torch_pruned(model)}

    def epoch(net: nn.Module):
        return lambda: fit(net, x, y, epochs=1, batch_size=batch, optimizer="sgd", lr=0.01,
                           momentum=0.9, progress=False)

    medians = interleaved_medians({k: epoch(v) for k, v in variants.items()}, repeats=rounds)
    per_step = {k: v / steps for k, v in medians.items()}
    return {
        "model": name,
        "step_ms": per_step,
        "prunekit_over_dense": per_step["prunekit"] / per_step["dense"],
        "torch_over_dense": per_step["torch"] / per_step["dense"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    args = parser.parse_args()
    steps, rounds = (4, 3) if args.quick else (10, 11)
    torch.set_num_threads(torch.get_num_threads())
    cases = [
        ("lenet5", build_model("lenet5"), (1, 28, 28)),
        ("resnet20", build_model("resnet20", in_channels=3), (3, 32, 32)),
    ]
    results = [measure(n, m, s, steps, rounds) for n, m, s in cases]
    print(f"training step at {SPARSITY:.0%} global sparsity, batch 64, SGD+momentum, "
          f"{torch.get_num_threads()} threads; medians of {rounds} interleaved epochs of {steps} steps")
    print_table(
        ["model", "dense ms/step", "prunekit ms/step", "prunekit overhead",
         "torch.prune ms/step", "torch.prune overhead"],
        [[r["model"], f"{r['step_ms']['dense']:.2f}", f"{r['step_ms']['prunekit']:.2f}",
          f"{100 * (r['prunekit_over_dense'] - 1):+.1f} %", f"{r['step_ms']['torch']:.2f}",
          f"{100 * (r['torch_over_dense'] - 1):+.1f} %"] for r in results],
    )
    path = write_results("mask_overhead", {"sparsity": SPARSITY, "steps": steps,
                                           "rounds": rounds, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
