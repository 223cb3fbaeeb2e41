"""What a pruning mask costs while training in a user's own loop, at 90 % global sparsity.

Every variant trains in the same plain loop — ``zero_grad(); loss.backward(); opt.step()`` with
SGD and momentum, no prunekit call in it — on the same data and seed:

- **dense**: no masks;
- **prunekit**: ``prune_by_ratio(model, 0.9)``; the masks hold by themselves (a gradient hook per
  masked weight, one fused multiply after each optimizer step);
- **torch.prune**: ``torch.nn.utils.prune.global_unstructured``, which keeps a second copy of
  every weight and recomputes ``weight_orig * mask`` in every forward (and its backward).

Epochs of each are timed round-robin and medians compared. Whole steps of two models with the
same shapes differ by a few per cent from run to run (memory placement, thread wake-ups), more
than prunekit's mask work costs, so the table also times that work alone — the gradient hooks on
real gradients and the after-step multiply, median of many calls — as a share of the dense
step: the overhead without the noise of timing two different models. After the timed epochs
the script checks that the pruned weights are still exactly zero.

    .venv/bin/python benchmarks/mask_overhead.py            # full run (~4 min)
    .venv/bin/python benchmarks/mask_overhead.py --flush-denormal   # tiny values flushed to 0
    .venv/bin/python benchmarks/mask_overhead.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.utils.prune as torch_prune
from common import print_table, write_results
from torch import nn

from prunekit import masks
from prunekit.evaluate import prunable_sparsity
from prunekit.latency import interleaved_medians
from prunekit.layers import prunable_weights
from prunekit.models import build_model
from prunekit.unstructured import prune_by_ratio

SPARSITY = 0.9
BATCH = 64


def _torch_pruned(model: nn.Module) -> nn.Module:
    pruned = copy.deepcopy(model)
    targets = [(w.module, w.weight.name) for w in prunable_weights(pruned)]
    torch_prune.global_unstructured(
        targets, pruning_method=torch_prune.L1Unstructured, amount=SPARSITY
    )
    return pruned


def _prunekit_pruned(model: nn.Module) -> nn.Module:
    pruned = copy.deepcopy(model)
    prune_by_ratio(pruned, SPARSITY, scope="global")
    return pruned


def _epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One epoch of a plain user loop over ``(x, y)``; its optimizer lives with the closure."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run() -> None:
        for start in range(0, len(x), BATCH):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[start:start + BATCH]),
                                        y[start:start + BATCH]).backward()
            optimizer.step()

    return run


def _mask_work_ms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, calls: int = 200) -> float:
    """Median milliseconds of one step's mask work on real gradients: every gradient hook (read
    from torch's private hook table: there is no public way to call one) and the after-step
    multiply."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    nn.functional.cross_entropy(model(x), y).backward()
    hooks = [(p, hook) for p in model.parameters()
             for hook in (getattr(p, "_post_accumulate_grad_hooks", None) or {}).values()]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        for param, hook in hooks:
            hook(param)
        masks._after_step(optimizer, (), {})
        times.append((time.perf_counter() - start) * 1e3)
    model.zero_grad(set_to_none=True)
    return statistics.median(times)


def measure(name: str, model: nn.Module, shape: tuple[int, ...], steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(BATCH * steps, *shape)
    y = torch.randint(0, 10, (BATCH * steps,))
    variants = {"dense": model, "prunekit": _prunekit_pruned(model), "torch": _torch_pruned(model)}
    medians = interleaved_medians({k: _epoch(v, x, y) for k, v in variants.items()},
                                  repeats=rounds)
    held = prunable_sparsity(variants["prunekit"])
    if abs(held - SPARSITY) > 1e-3:
        raise SystemExit(f"{name}: the masks did not hold in the plain loop ({held:.4f} sparse)")
    per_step = {k: v / steps for k, v in medians.items()}
    work_ms = _mask_work_ms(variants["prunekit"], x[:BATCH], y[:BATCH])
    return {
        "model": name,
        "step_ms": per_step,
        "mask_work_ms": work_ms,
        "mask_work_share": work_ms / per_step["dense"],
        "prunekit_over_dense": per_step["prunekit"] / per_step["dense"],
        "torch_over_dense": per_step["torch"] / per_step["dense"],
        "sparsity_after_training": held,
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
    cases = [
        ("lenet5", build_model("lenet5"), (1, 28, 28)),
        ("resnet20", build_model("resnet20", in_channels=3), (3, 32, 32)),
    ]
    results = [measure(n, m, s, steps, rounds) for n, m, s in cases]
    print(f"training step at {SPARSITY:.0%} global sparsity, batch {BATCH}, SGD+momentum in a "
          f"plain loop, {torch.get_num_threads()} threads; medians of {rounds} interleaved "
          f"epochs of {steps} steps{', denormals flushed' if args.flush_denormal else ''}")
    print_table(
        ["model", "dense ms/step", "prunekit ms/step", "prunekit overhead",
         "torch.prune ms/step", "torch.prune overhead", "mask work ms/step", "mask work share",
         "sparsity after"],
        [[r["model"], f"{r['step_ms']['dense']:.2f}", f"{r['step_ms']['prunekit']:.2f}",
          f"{100 * (r['prunekit_over_dense'] - 1):+.1f} %", f"{r['step_ms']['torch']:.2f}",
          f"{100 * (r['torch_over_dense'] - 1):+.1f} %", f"{r['mask_work_ms']:.3f}",
          f"{100 * r['mask_work_share']:.2f} %", f"{r['sparsity_after_training']:.4f}"]
         for r in results],
    )
    name = "mask_overhead_flush_denormal" if args.flush_denormal else "mask_overhead"
    path = write_results(name, {"sparsity": SPARSITY, "steps": steps, "loop": "plain",
                                "flush_denormal": args.flush_denormal,
                                "rounds": rounds, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
