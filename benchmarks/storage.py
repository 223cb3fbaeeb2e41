"""How much disk does sparsity save? File size of each storage format against dense fp32.

Models: LeNet-300-100 (266 k weights) and an MLP of 1024-wide layers (3.2 M), their weights
magnitude-pruned layer by layer to 50 / 80 / 90 / 95 % (random init: file size depends on the
sparsity pattern and the values' statistics, which magnitude pruning of Gaussian-initialised
weights reproduces). Every file is written to disk through ``prunekit.sparse.save_state_dict``
and read back, and the round trip is checked; sizes are real file sizes, safetensors header
included. Targets (issue 4): <= 0.12x at 90 % with fp32 values, <= 0.07x with fp16.

    .venv/bin/python benchmarks/storage.py            # full run
    .venv/bin/python benchmarks/storage.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, write_results
from safetensors.torch import save_file
from torch import nn

from prunekit.masks import strip
from prunekit.models import build_model
from prunekit.sparse import load_state_dict, save_state_dict
from prunekit.unstructured import prune_by_ratio

SPARSITIES = (0.5, 0.8, 0.9, 0.95)
FORMATS = (("bitmask", None), ("bitmask", torch.float16), ("csr", None), ("csr", torch.float16))


def _models(quick: bool) -> dict[str, nn.Module]:
    models = {"LeNet-300-100": build_model("lenet300")}
    if not quick:
        models["MLP 1024-wide"] = nn.Sequential(
            nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
            nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10),
        )  # fmt: skip
    return models


def _measure(state: dict[str, torch.Tensor], directory: Path) -> list[dict[str, object]]:
    dense = directory / "dense.safetensors"
    save_file(state, str(dense))
    dense_bytes = dense.stat().st_size
    rows = []
    for fmt, values_dtype in FORMATS:
        path = directory / f"{fmt}.safetensors"
        start = time.perf_counter()
        save_state_dict(state, path, format=fmt, values_dtype=values_dtype)  # type: ignore[arg-type]
        saved = time.perf_counter()
        loaded = load_state_dict(path)
        done = time.perf_counter()
        exact = all(torch.equal(loaded[k], v) for k, v in state.items())
        close = all(
            torch.allclose(loaded[k].float(), v.float(), rtol=1e-3) for k, v in state.items()
        )
        if not (exact if values_dtype is None else close):
            raise AssertionError(f"{fmt}/{values_dtype}: the file does not load back as saved")
        rows.append({
            "format": fmt,
            "values": "fp16" if values_dtype is not None else "fp32",
            "bytes": path.stat().st_size,
            "dense_bytes": dense_bytes,
            "ratio": path.stat().st_size / dense_bytes,
            "save_ms": (saved - start) * 1e3,
            "load_ms": (done - saved) * 1e3,
            "exact": exact,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LeNet only, for a smoke test")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, base in _models(args.quick).items():
            for sparsity in SPARSITIES:
                model = copy.deepcopy(base)
                prune_by_ratio(model, sparsity, scope="layer")
                strip(model)
                state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
                for row in _measure(state, Path(tmp)):
                    results.append({"model": name, "sparsity": sparsity, **row})
    print_table(
        ["model", "sparsity", "format", "values", "dense bytes", "bytes", "x dense",
         "save ms", "load ms", "exact"],
        [
            [r["model"], f"{r['sparsity']:.0%}", r["format"], r["values"], r["dense_bytes"],
             r["bytes"], f"{r['ratio']:.3f}", f"{r['save_ms']:.1f}", f"{r['load_ms']:.1f}",
             "yes" if r["exact"] else "fp16"]
            for r in results
        ],
    )  # fmt: skip
    path = write_results("storage", {"quick": args.quick, "rows": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
