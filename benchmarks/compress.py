"""Budget-driven compression (issue 11) and latency-aimed structured pruning (issue 14, item 2).

Three tables, each beside its baseline:

1. ``--target-macs 0.25 --max-accuracy-drop 1.0`` on LeNet-5 and ResNet-20 (one input channel)
   trained on MNIST-5k: :func:`prunekit.compress.compress` (sensitivity on a validation split,
   greedy walk, 4 prune + 2-epoch fine-tune steps) against the uniform ratio at the same
   counted MACs with the same steps and fine-tuning, and against Torch-Pruning's uniform
   model at the target MACs with the same fine-tuning epochs. Test accuracy side by side, with
   the paired difference and its standard error (1,000 test samples cannot tell half a point
   from chance), wall time; ``--seeds 0 1 2`` repeats it per seed and adds the mean difference
   over the seeds.
2. ``--target-latency 0.5`` on ResNet-18 (batch 8, 224², 2 threads), random weights (latency
   does not depend on them; no quality is claimed): the measured latency fraction (with the
   noise band of the same run), and the MACs the search keeps against the uniform ratio at the
   same measured latency. No fine-tuning (epochs 0), no quality bound, and the walk's
   allocation alone (``candidates=1``: a probe on random weights and data would choose by
   noise).
3. ``prunekit prune``'s own before/after on ResNet-18 (batch 8, 224², 2 threads, ratio 0.5),
   with the channel counts from the latency table (the default) and uniform: the MACs ratio,
   the latency ratio and their quotient (target ≥ 0.95).

    .venv/bin/python benchmarks/compress.py            # full run (~25 min on 2 quiet cores)
    .venv/bin/python benchmarks/compress.py --quick    # smoke test: small inputs, 1 epoch

Writes ``benchmarks/results/compress.json`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import math
import tempfile
import time

import torch
from common import machine_line, print_table, write_results
from torch import Tensor, nn

from prunekit.compress import Budget, Settings, compress
from prunekit.compress.run import validation_split
from prunekit.data import Dataset, load_dataset
from prunekit.models import build_model
from prunekit.structured.before_after import prune_and_measure
from prunekit.train import fit

# 4 prune steps, each followed by 2 epochs of fine-tuning (3 × 1 lost 1.6 pt on ResNet-20)
QUALITY_SETTINGS = Settings(steps=4, epochs=2, latency_budget_s=5.0)


def quality_rows(args: argparse.Namespace) -> list[dict]:
    """Table 1: LeNet-5 and ResNet-20 on MNIST-5k at a quarter of the MACs."""
    data = load_dataset("mnist5k", n_samples=1000 if args.quick else None)
    rows = []
    zoo = {"lenet5": {}, "resnet20": {"in_channels": 1}}
    for name, seed in itertools.product(args.models.split(","), args.seeds):
        kwargs, epochs = zoo[name], 6
        settings = dataclasses.replace(QUALITY_SETTINGS, seed=seed)
        torch.manual_seed(seed)
        model = build_model(name, **kwargs)
        (x_fit, y_fit), _ = validation_split(data, 0.2)
        start = time.perf_counter()
        fit(model, x_fit, y_fit, epochs=1 if args.quick else epochs, progress=False)
        trained_s = time.perf_counter() - start
        dense = copy.deepcopy(model)
        start = time.perf_counter()
        result = compress(model, data, Budget("macs", 0.25), max_drop=1.0,
                          settings=settings, progress=False)
        seconds = time.perf_counter() - start
        by = {r["name"]: r for r in result.rows}
        chosen = next(r for r in result.rows if r["chosen"])
        uniform = by.get("uniform", {})
        peer = torch_pruning_row(dense, data, x_fit, y_fit, settings)
        versus = {"uniform": paired_difference(result.model, result.models.get("uniform"), data),
                  "torch_pruning": paired_difference(result.model, peer.pop("model"), data)}
        rows.append({
            "model": name, "seed": seed, "baseline_train_s": trained_s, "compress_s": seconds,
            "met": result.met, "verdict": result.verdict,
            "dense_accuracy": by["dense"]["accuracy"], "accuracy": chosen["accuracy"],
            "macs_fraction": chosen["budget_fraction"],
            "uniform_accuracy": uniform.get("accuracy", math.nan),
            "uniform_macs_fraction": uniform.get("budget_fraction", math.nan),
            "val_drop": chosen["drop"], "uniform_val_drop": uniform.get("drop", math.nan),
            "torch_pruning_accuracy": peer["accuracy"],
            "torch_pruning_macs_fraction": peer["macs_fraction"],
            "versus": versus,
            "steps": [{k: r.get(k) for k in ("name", "after", "budget_fraction", "accuracy", "drop",
                                             "predicted_drop", "speedup", "allocation",
                                             "probes")}
                      for r in result.rows],
        })
    return rows


def torch_pruning_row(model: nn.Module, data: Dataset, x_fit: Tensor, y_fit: Tensor,
                      settings_used: Settings) -> dict:
    """Torch-Pruning's uniform model at the same MACs (its ratio bisected: it has no MACs
    target), one-shot from the same trained baseline, then the fine-tuning budget compress
    spends on its uniform baseline (``steps × epochs`` epochs at the same lr and batch)."""
    from structured_vs_peers import _torch_pruning_to_macs  # needs the bench extra

    from prunekit.evaluate import count_macs, evaluate_accuracy

    x = x_fit[:1]
    peer = _torch_pruning_to_macs(model, x, 0.25)
    fit(peer, x_fit, y_fit, epochs=settings_used.steps * settings_used.epochs,
        lr=settings_used.lr, batch_size=settings_used.batch_size, seed=settings_used.seed + 1,
        progress=False)
    return {"macs_fraction": count_macs(peer, x) / count_macs(model, x),
            "accuracy": evaluate_accuracy(peer, data.x_test, data.y_test)["accuracy"],
            "model": peer}


def over_seeds(quality: list[dict]) -> list[dict]:
    """Per model, the mean test difference to uniform and to Torch-Pruning over the seeds that
    have one, with the standard error of that mean (from the spread between seeds), the wins
    and how many seeds it is over."""
    summary = []
    for name in dict.fromkeys(r["model"] for r in quality):
        runs = [r for r in quality if r["model"] == name]
        row: dict = {"model": name, "seeds": len(runs)}
        for peer in ("uniform", "torch_pruning"):
            values = [v for r in runs if math.isfinite(v := r["versus"][peer]["difference_pt"])]
            if not values:  # no seed got that far (no uniform row: no step within the bound)
                row[peer] = {"mean_pt": math.nan, "se_pt": math.nan, "wins": 0, "ties": 0}
                continue
            mean = sum(values) / len(values)
            se = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                            / len(values)) if len(values) > 1 else math.nan)
            row[peer] = {"mean_pt": mean, "se_pt": se, "wins": sum(v > 0 for v in values),
                         "ties": sum(v == 0 for v in values), "over": len(values)}
        summary.append(row)
    return summary


@torch.no_grad()
def paired_difference(ours: nn.Module, other: nn.Module | None, data: Dataset) -> dict:
    """Our test accuracy minus ``other``'s on the same samples, in points, with its standard
    error from the samples the two disagree on (paired: a shared hard sample cancels). A
    difference within two standard errors is one the test split cannot tell from chance."""
    if other is None:
        return {"difference_pt": math.nan, "se_pt": math.nan, "text": "—"}
    right = [m.eval()(data.x_test).argmax(1) == data.y_test for m in (ours, other)]
    gain = (right[0] & ~right[1]).sum().item()
    loss = (~right[0] & right[1]).sum().item()
    n = len(data.y_test)
    difference = 100 * (gain - loss) / n
    se = 100 * math.sqrt(max(gain + loss - (gain - loss) ** 2 / n, 0.0)) / n
    text = f"{difference:+.2f} ± {2 * se:.2f} pt"
    if abs(difference) <= 2 * se:
        text += " (within noise)"
    return {"difference_pt": difference, "se_pt": se, "text": text}


def _random_images(size: int, count: int, classes: int) -> Dataset:
    torch.manual_seed(0)
    x = torch.randn(count, 3, size, size)
    y = torch.randint(0, classes, (count,))
    half = count // 2
    return Dataset("random-images", x[:half], y[:half], x[half:], y[half:], classes)


def latency_row(args: argparse.Namespace) -> dict:
    """Table 2: ResNet-18 aimed at half its measured latency."""
    size, batch = (64, 4) if args.quick else (224, 8)
    data = _random_images(size, 40, 1000)
    torch.manual_seed(0)
    model = build_model("resnet18").eval()
    start = time.perf_counter()
    result = compress(model, data, Budget("latency", 0.5), max_drop=1e9,
                      settings=Settings(steps=2, epochs=0, threads=2, round_to=8,
                                        amounts=(0.5,), candidates=1, latency_budget_s=5.0 if args.quick
                                        else 30.0),
                      latency_input=data.x_test[:batch], progress=False)
    by = {r["name"]: r for r in result.rows}
    chosen = next(r for r in result.rows if r["chosen"])
    uniform = by.get("uniform", {})
    return {
        "input": f"{batch}×3×{size}²", "threads": 2, "met": result.met,
        "latency_fraction": chosen["budget_fraction"],
        "macs_kept": chosen["macs"] / by["dense"]["macs"],
        "uniform_latency_fraction": uniform.get("budget_fraction", math.nan),
        "uniform_macs_kept": uniform.get("macs", math.nan) / by["dense"]["macs"],
        "noise": result.noise, "seconds": time.perf_counter() - start,
        "verdict": result.verdict,
    }


def prune_rows(args: argparse.Namespace) -> list[dict]:
    """Table 3: ``prunekit prune --ratio 0.5`` on ResNet-18, latency-aware and uniform."""
    size, batch = (64, 4) if args.quick else (224, 8)
    torch.manual_seed(0)
    dense = build_model("resnet18")
    example = torch.randn(batch, 3, size, size)
    rows = []
    for aware in (True, False):
        for deploy in (False, True):
            with tempfile.TemporaryDirectory() as out:
                _, after = prune_and_measure(copy.deepcopy(dense), example, out, ratio=0.5,
                                             latency_aware=aware, threads=2, deploy=deploy,
                                             repeats=10, latency_budget_s=5.0 if args.quick
                                             else 20.0)
            rows.append({"counts": "latency table" if aware else "uniform",
                         "timed": "BN folded" if deploy else "eager",
                         "macs_ratio": after["macs_ratio"], "latency_ratio": after["latency_ratio"],
                         "latency_vs_macs": after["latency_vs_macs"],
                         "speedup": after["speedup_text"], "noise_band": after["noise_band"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 epoch")
    parser.add_argument("--only", choices=("quality", "latency", "prune"), default=None)
    parser.add_argument("--models", default="lenet5,resnet20", help="for the quality table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="quality table: one run per seed (initialisation, fine-tuning "
                             "order), then the mean difference over them")
    args = parser.parse_args()
    print(machine_line())
    payload: dict = {"quick": args.quick}
    if args.only in (None, "quality"):
        payload["quality"] = quality = quality_rows(args)
        print_table(["model", "dense acc %", "compress acc %", "MACs", "uniform acc %",
                     "uniform MACs", "Torch-Pruning acc %", "TP MACs", "met", "seconds",
                     "vs uniform (±2 SE)", "vs TP (±2 SE)"],
                    [[r["model"], f"{100 * r['dense_accuracy']:.2f}",
                      f"{100 * r['accuracy']:.2f}", f"{r['macs_fraction']:.3f}",
                      f"{100 * r['uniform_accuracy']:.2f}", f"{r['uniform_macs_fraction']:.3f}",
                      f"{100 * r['torch_pruning_accuracy']:.2f}",
                      f"{r['torch_pruning_macs_fraction']:.3f}",
                      r["met"], f"{r['compress_s']:.0f}", r["versus"]["uniform"]["text"],
                      r["versus"]["torch_pruning"]["text"]] for r in quality])
        if len(args.seeds) > 1:
            payload["over_seeds"] = summary = over_seeds(quality)
            print_table(["model", "seeds", "vs uniform, mean ± 2 SE", "wins / ties",
                         "vs TP, mean ± 2 SE", "wins / ties"],
                        [[r["model"], r["seeds"],
                          f"{r['uniform']['mean_pt']:+.2f} ± {2 * r['uniform']['se_pt']:.2f} pt",
                          (f"{r['uniform']['wins']} / {r['uniform']['ties']} of "
                          f"{r['uniform'].get('over', 0)}"),
                          (f"{r['torch_pruning']['mean_pt']:+.2f} ± "
                          f"{2 * r['torch_pruning']['se_pt']:.2f} pt"),
                          (f"{r['torch_pruning']['wins']} / {r['torch_pruning']['ties']} of "
                          f"{r['torch_pruning'].get('over', 0)}")]
                         for r in summary])
    if args.only in (None, "latency"):
        payload["latency"] = row = latency_row(args)
        print_table(["input", "latency (measured)", "MACs kept", "uniform latency",
                     "uniform MACs kept", "met", "noise"],
                    [[row["input"], f"{row['latency_fraction']:.3f}", f"{row['macs_kept']:.3f}",
                      f"{row['uniform_latency_fraction']:.3f}",
                      f"{row['uniform_macs_kept']:.3f}", row["met"], row["noise"]]])
    if args.only in (None, "prune"):
        payload["prune"] = rows = prune_rows(args)
        print_table(["counts", "timed", "MACs ratio", "latency ratio", "latency / MACs",
                     "speed-up"],
                    [[r["counts"], r["timed"], f"{r['macs_ratio']:.2f}",
                      f"{r['latency_ratio']:.2f}", f"{r['latency_vs_macs']:.2f}", r["speedup"]]
                     for r in rows])
    name = "compress" + ("-quick" if args.quick else "") + (f"-{args.only}" if args.only else "")
    print(f"results: {write_results(name, payload)}")


if __name__ == "__main__":
    main()
