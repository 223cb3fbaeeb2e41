"""What ``prunekit.save`` / ``prunekit.load`` cost: file size against ``torch.save(state_dict)``,
save time, and load time in a fresh process that has no model source code.

Models: ResNet-18, ResNet-50 and MobileNetV2 from the zoo (random init: size and speed do not
depend on training), ResNet-18 with half its channels removed by structured pruning, and
ResNet-18 at 90 % global magnitude sparsity stored dense, as a bitmask, and as a bitmask with
fp16 values. Load times are medians of fresh processes (``import torch`` excluded).

    .venv/bin/python benchmarks/saving.py            # full run
    .venv/bin/python benchmarks/saving.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import print_table, write_results
from torch import nn

import prunekit
from prunekit.masks import strip
from prunekit.models import build_model
from prunekit.structured import prune_channels
from prunekit.unstructured import prune_by_ratio

_LOAD = (
    "import sys, time, torch, prunekit\n"
    "start = time.perf_counter(); prunekit.load(sys.argv[1])\n"
    "print(time.perf_counter() - start)"
)


def _measure(label: str, model: nn.Module, folder: Path, repeats: int, **options: Any) -> dict:
    path = folder / f"{label.replace(' ', '_')}.safetensors"
    saves = []
    for _ in range(repeats):
        start = time.perf_counter()
        prunekit.save(model, path, **options)
        saves.append(time.perf_counter() - start)
    loads = [
        float(subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True,
                             text=True, check=True).stdout)
        for _ in range(repeats)
    ]
    reference = folder / "reference.pt"
    torch.save(model.state_dict(), reference)
    return {
        "model": label,
        "params": sum(p.numel() for p in model.parameters()),
        "file_bytes": path.stat().st_size,
        "vs_torch_save": path.stat().st_size / reference.stat().st_size,
        "save_s": statistics.median(saves),
        "load_s": statistics.median(loads),
    }


def _cases(quick: bool) -> list[tuple[str, nn.Module, dict]]:
    torch.manual_seed(0)
    names = ("resnet18",) if quick else ("resnet18", "resnet50", "mobilenet_v2")
    cases = [(name, build_model(name).eval(), {}) for name in names]
    compact = build_model("resnet18").eval()
    prune_channels(compact, torch.zeros(1, 3, 224, 224), ratio=0.5)
    cases.append(("resnet18 channels -50%", compact, {}))
    sparse = build_model("resnet18").eval()
    prune_by_ratio(sparse, 0.9, scope="global")
    strip(sparse)
    cases += [
        ("resnet18 90% sparse, dense", sparse, {}),
        ("resnet18 90% sparse, bitmask", sparse, {"format": "bitmask"}),
        ("resnet18 90% sparse, bitmask fp16", sparse,
         {"format": "bitmask", "values_dtype": torch.float16}),
    ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one model, one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_measure(label, model, Path(tmp), repeats, **options)
                for label, model, options in _cases(args.quick)]
    print(f"prunekit.save / prunekit.load, medians of {repeats}; load in a fresh process")
    print_table(
        ["model", "params", "file MB", "vs torch.save", "save s", "load s"],
        [[r["model"], f"{r['params']:,}", f"{r['file_bytes'] / 1e6:.1f}",
          f"{r['vs_torch_save']:.3f}×", f"{r['save_s']:.2f}", f"{r['load_s']:.2f}"] for r in rows],
    )
    print(f"wrote {write_results('saving', {'repeats': repeats, 'rows': rows})}")


if __name__ == "__main__":
    main()
