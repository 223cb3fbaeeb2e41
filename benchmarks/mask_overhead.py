"""What a pruning mask costs while training: step time of a 90 %-masked model over a dense one.

prunekit keeps the zeros in the weight itself and multiplies only the gradients by the mask, in
one fused call per step; ``torch.nn.utils.prune`` keeps a second copy of every weight and
recomputes ``weight_orig * mask`` in every forward (and its backward). Both models train with
the same data, optimizer and seed; epochs of each are timed round-robin and medians compared.

Whole steps of two models with the same shapes differ by a few per cent from run to run here
(memory placement, thread wake-ups), more than prunekit's mask work costs. So the table also
times that work alone — the per-step gradient multiply of :class:`prunekit.masks.MaskEnforcement`,
median of many calls on real gradients — as a share of the dense step: the overhead without the
noise of timing two different models.

    .venv/bin/python benchmarks/mask_overhead.py            # full run (~4 min)
    .venv/bin/python benchmarks/mask_overhead.py --flush-denormal   # tiny values flushed to 0
    .venv/bin/python benchmarks/mask_overhead.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.utils.prune as torch_prune
from common import print_table, write_results
from torch import nn

from prunekit.latency import interleaved_medians
from prunekit.masks import MaskEnforcement
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


def _enforcement_ms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, calls: int = 200) -> float:
    """Median milliseconds of one ``MaskEnforcement.on_before_step`` on real gradients."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    enforcement = MaskEnforcement()
    enforcement.on_fit_start(model, optimizer)
    nn.functional.cross_entropy(model(x), y).backward()
    times = []
    for step in range(calls):
        start = time.perf_counter()
        enforcement.on_before_step(step, model, optimizer)
        times.append((time.perf_counter() - start) * 1e3)
    model.zero_grad(set_to_none=True)
    return statistics.median(times)


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
    enforcement_ms = _enforcement_ms(variants["prunekit"], x[:batch], y[:batch])
    return {
        "model": name,
        "step_ms": per_step,
        "enforcement_ms": enforcement_ms,
        "enforcement_share": enforcement_ms / per_step["dense"],
        "prunekit_over_dense": per_step["prunekit"] / per_step["dense"],
        "torch_over_dense": per_step["torch"] / per_step["dense"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="torch.set_flush_denormal(True): tiny values become zero")
    args = parser.parse_args()
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("--flush-denormal: this CPU has no flush-to-zero mode")
    steps, rounds = (4, 3) if args.quick else (10, 21)
    torch.set_num_threads(torch.get_num_threads())
    cases = [
        ("lenet5", build_model("lenet5"), (1, 28, 28)),
        ("resnet20", build_model("resnet20", in_channels=3), (3, 32, 32)),
    ]
    results = [measure(n, m, s, steps, rounds) for n, m, s in cases]
    print(f"training step at {SPARSITY:.0%} global sparsity, batch 64, SGD+momentum, "
          f"{torch.get_num_threads()} threads; medians of {rounds} interleaved epochs of {steps} steps"
          f"{', denormals flushed' if args.flush_denormal else ''}")
    print_table(
        ["model", "dense ms/step", "prunekit ms/step", "prunekit overhead",
         "torch.prune ms/step", "torch.prune overhead", "mask work ms/step", "mask work share"],
        [[r["model"], f"{r['step_ms']['dense']:.2f}", f"{r['step_ms']['prunekit']:.2f}",
          f"{100 * (r['prunekit_over_dense'] - 1):+.1f} %", f"{r['step_ms']['torch']:.2f}",
          f"{100 * (r['torch_over_dense'] - 1):+.1f} %", f"{r['enforcement_ms']:.3f}",
          f"{100 * r['enforcement_share']:.2f} %"] for r in results],
    )
    name = "mask_overhead_flush_denormal" if args.flush_denormal else "mask_overhead"
    path = write_results(name, {"sparsity": SPARSITY, "steps": steps,
                                "flush_denormal": args.flush_denormal,
                                "rounds": rounds, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
