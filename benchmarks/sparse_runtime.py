"""Does sparsity make inference faster? Dense vs torch's CSR vs prunekit's deployed kernel.

Part 1, one Linear layer (sizes 1024²…4096², batch 1 and 64, sparsity 50…99 %): speed-up over
the dense layer of ``torch.sparse`` CSR matmul (its default CPU path) and of the model that
``prunekit.sparse.deploy`` returns — which keeps the layer dense where the kernel loses, so its
speed-up should never fall below 1.0x. Part 2, end to end: LeNet-300-100 at 92 % sparsity and
an MLP of 4096-wide layers at 90 %, dense vs deployed latency.

Weights are random and magnitude-pruned (latency does not depend on what was learned). All
candidates of a row are timed round-robin in the same process (each timed call right after an
untimed one of the same candidate, so none inherits another's cache or thread state) and
medians compared, so ratios hold on a busy machine even when absolute times drift.

    .venv/bin/python benchmarks/sparse_runtime.py            # full run (a few minutes)
    .venv/bin/python benchmarks/sparse_runtime.py --quick    # smoke test
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared machine
# a spinning thread holds a core the others need (measured here: a 1024x1024 x 64 dense matmul
# takes 16 ms with spinning threads vs 2.5 ms without); on a quiet machine set it to ACTIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
from collections.abc import Callable

import torch
from common import print_table, write_results
from torch import nn

from prunekit.latency import interleaved_medians, repeats_for
from prunekit.masks import strip
from prunekit.models import build_model
from prunekit.sparse import deploy
from prunekit.sparse.kernels import default_kernel_path, kernel_library
from prunekit.unstructured import prune_by_ratio

SIZES = (1024, 2048, 4096)
BATCHES = (1, 64)
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _pruned(model: nn.Module, sparsity: float, scope: str) -> nn.Module:
    prune_by_ratio(model, sparsity, scope=scope)  # type: ignore[arg-type]
    return strip(model).eval()


def _compare(runs: dict[str, Callable[[], object]], budget_ms: float) -> dict[str, float]:
    """Medians of interleaved runs; fast candidates get more rounds, so noise evens out."""
    with torch.inference_mode():
        scale = sum(interleaved_medians(runs, repeats=3).values())
        rounds = repeats_for(scale, budget_ms=budget_ms, low=15, high=400)
        return interleaved_medians(runs, repeats=rounds, untimed_per_turn=1)


def _layer_row(size: int, batch: int, sparsity: float, budget_ms: float) -> dict[str, object]:
    model = _pruned(nn.Sequential(nn.Linear(size, size)), sparsity, "layer")
    layer = model[0]
    x = torch.randn(batch, size)
    csr = layer.weight.detach().to_sparse_csr()
    bias = layer.bias.detach()[:, None]
    deployed, decisions = deploy(model, x)
    runs = {
        "dense": lambda: model(x),
        "torch_csr": lambda: torch.addmm(bias, csr, x.t()).t(),
        "prunekit": lambda: deployed(x),
    }
    medians = _compare(runs, budget_ms)
    dense = medians["dense"]
    return {
        "size": size,
        "batch": batch,
        "sparsity": sparsity,
        "dense_ms": dense,
        "torch_csr_speedup": dense / medians["torch_csr"],
        "prunekit_speedup": dense / medians["prunekit"],
        "prunekit_layout": decisions[0].layout,
    }


def _end_to_end_row(
    name: str, model: nn.Module, x: torch.Tensor, budget_ms: float
) -> dict[str, object]:
    deployed, decisions = deploy(model, x)
    medians = _compare({"dense": lambda: model(x), "prunekit": lambda: deployed(x)}, budget_ms)
    return {
        "model": name,
        "batch": len(x),
        "dense_ms": medians["dense"],
        "deployed_ms": medians["prunekit"],
        "speedup": medians["dense"] / medians["prunekit"],
        "sparse_layers": f"{sum(d.deployed for d in decisions)}/{len(decisions)}",
    }


def _mlp_4096() -> nn.Module:
    return nn.Sequential(
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rows, for a smoke test")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch (and kernel) threads; default: torch's"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="Linear sizes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    if kernel_library() is None:
        raise SystemExit("the sparse kernel is not built: run `pip install -e .` first")
    sizes, batches, sparsities = args.sizes, BATCHES, SPARSITIES
    budget_ms = 2000.0
    if args.quick:
        sizes, sparsities, budget_ms = (1024,), (0.5, 0.9), 200.0

    layer_rows = []
    for size in sizes:
        for batch in batches:
            for sparsity in sparsities:
                layer_rows.append(_layer_row(size, batch, sparsity, budget_ms))
    policy = os.environ["OMP_WAIT_POLICY"]
    print(f"\nLinear layer, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={policy}, ", end="")
    print(f"kernel path: {default_kernel_path()}\n")
    print_table(
        ["size", "batch", "sparsity", "dense ms", "torch CSR", "prunekit deploy", "runs as"],
        [
            [f"{r['size']}²", r["batch"], f"{r['sparsity']:.0%}", f"{r['dense_ms']:.2f}",
             f"{r['torch_csr_speedup']:.2f}x", f"{r['prunekit_speedup']:.2f}x",
             r["prunekit_layout"]]
            for r in layer_rows
        ],
    )  # fmt: skip

    print("\nRows that run as dense time the very layer of the dense column (deploy kept it): "
          "their distance from 1.00x is the timer's spread at that size.")

    end_to_end = []
    for batch in batches:
        lenet = _pruned(build_model("lenet300"), 0.92, "global")
        end_to_end.append(
            _end_to_end_row("LeNet-300-100, 92 %", lenet, torch.randn(batch, 1, 28, 28), budget_ms)
        )
        if not args.quick:
            mlp = _pruned(_mlp_4096(), 0.9, "layer")
            end_to_end.append(
                _end_to_end_row("MLP 4096-wide, 90 %", mlp, torch.randn(batch, 4096), budget_ms)
            )
    print("\nEnd to end\n")
    print_table(
        ["model", "batch", "dense ms", "deployed ms", "speed-up", "sparse layers"],
        [
            [r["model"], r["batch"], f"{r['dense_ms']:.3f}", f"{r['deployed_ms']:.3f}",
             f"{r['speedup']:.2f}x", r["sparse_layers"]]
            for r in end_to_end
        ],
    )  # fmt: skip
    path = write_results(
        "sparse_runtime",
        {
            "quick": args.quick,
            "kernel_path": default_kernel_path(),
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "layers": layer_rows,
            "end_to_end": end_to_end,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
