"""From files to files: what ``prunekit oneshot`` and ``prunekit shrink`` do, callable from Python.

Each loads the model (an HF folder or a ``.gguf`` file), cuts calibration windows from the
user's text, prunes, optionally recovers by distillation from the dense model, and writes the
output folder with a ``prunekit_report.json`` saying exactly what was done:

- ``oneshot``: ``save_pretrained`` output (zeros in place: ``AutoModelForCausalLM
  .from_pretrained(DIR)`` loads it) plus ``model.prunekit.safetensors`` beside it (bitmask
  compressed, what the sparsity buys on disk);
- ``shrink``: ``save_pretrained`` output with the rewritten config when the config describes
  the smaller model. Fewer heads in BERT (whose config fixes the head size): the HF files hold
  a head-padded twin with equal outputs (:mod:`prunekit.hf.padded_heads`) — the portable form
  — and ``model.prunekit.safetensors`` the compact, faster one. Otherwise (non-uniform widths,
  GPT-2 heads) only ``model.prunekit.safetensors`` (load it with ``prunekit.load``), and the
  report says why — a ``config.json`` that does not match the weights is never written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from prunekit.hf.architectures import architecture_of
from prunekit.hf.corpus import calibration_batches, read_text_file
from prunekit.hf.distill import distill
from prunekit.hf.loading import COMPRESSED_NAME, hf_progress_bars, load_pretrained, save_pretrained
from prunekit.hf.oneshot import check_options, prune_oneshot
from prunekit.hf.padded_heads import padded_twin
from prunekit.hf.shrink import check_amounts, shrink
from prunekit.hf.text_eval import parameter_count

log = logging.getLogger(__name__)

REPORT_NAME = "prunekit_report.json"


def _prepare(model_source: Path, calibration: Path, samples: int, seq_len: int, batch_size: int,
             progress: bool):  # fmt: skip
    text = read_text_file(calibration)
    model, tokenizer = load_pretrained(model_source, progress=progress)
    if tokenizer is None:
        raise ValueError(f"{model_source} has no tokenizer; calibration text needs one beside it")
    batches = calibration_batches(tokenizer, text, samples=samples, seq_len=seq_len,
                                  batch_size=batch_size)  # fmt: skip
    return model, tokenizer, batches


def _recover(model, dense, batches, steps: int, progress: bool) -> dict[str, Any] | None:
    if not steps:
        return None
    return dataclasses.asdict(distill(model, dense, batches, steps=steps, progress=progress))


def oneshot_to_dir(
    model_source: str | Path, calibration: str | Path, out_dir: str | Path, *,
    method: str, sparsity: float | None = None, nm: tuple[int, int] | None = None,
    allocation: str = "uniform", samples: int = 32, seq_len: int = 256, batch_size: int = 8,
    recover_steps: int = 0, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """One-shot prune ``model_source`` and write ``out_dir``; returns the report."""
    check_options(method, sparsity, nm, allocation)  # bad options fail before the model loads
    model, tokenizer, batches = _prepare(Path(model_source), Path(calibration), samples,
                                         seq_len, batch_size, progress)  # fmt: skip
    dense = copy.deepcopy(model) if recover_steps else None
    result = prune_oneshot(model, batches, method=method, sparsity=sparsity, nm=nm,
                           allocation=allocation, progress=progress)  # fmt: skip
    recovery = _recover(model, dense, batches, recover_steps, progress)
    params, nonzero = parameter_count(model)
    report = {
        "command": "oneshot", "model": str(model_source), "method": method,
        "target": result.target, "allocation": allocation, "samples": samples, "seq_len": seq_len,
        "sparsity_of_pruned_layers": result.sparsity, "pruned_weights": result.pruned,
        "layer_weights": result.total, "params": params, "nonzero_params": nonzero,
        "layer_targets": result.layer_targets, "seconds": result.seconds, "recovery": recovery,
        "files": {"hf": "config.json + model.safetensors", "compressed": COMPRESSED_NAME},
    }  # fmt: skip
    with hf_progress_bars(progress):
        save_pretrained(model, tokenizer, out_dir, compressed=True,
                        extra_files={REPORT_NAME: json.dumps(report, indent=2) + "\n"})  # fmt: skip
    return report


def shrink_to_dir(
    model_source: str | Path, calibration: str | Path, out_dir: str | Path, *,
    heads: float = 0.0, ffn: float = 0.0, layers: int = 0, criterion: str = "activation",
    uniform: bool = True, samples: int = 32, seq_len: int = 256, batch_size: int = 8,
    recover_steps: int = 0, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Shrink ``model_source`` in width and depth and write ``out_dir``; returns the report."""
    check_amounts(heads, ffn, layers, criterion)  # bad options fail before the model loads
    model, tokenizer, batches = _prepare(Path(model_source), Path(calibration), samples,
                                         seq_len, batch_size, progress)  # fmt: skip
    dense = copy.deepcopy(model) if recover_steps else None
    result = shrink(model, batches, heads=heads, ffn=ffn, layers=layers, criterion=criterion,
                    uniform=uniform)  # fmt: skip
    recovery = _recover(model, dense, batches, recover_steps, progress)
    report = {
        "command": "shrink", "model": str(model_source), "criterion": criterion,
        "uniform": uniform, **dataclasses.asdict(result), "recovery": recovery,
    }
    twin = None if result.config_describes_model else padded_twin(model)
    if result.config_describes_model:
        report["files"] = {"hf": "config.json + model.safetensors"}
    elif twin is not None:
        report["files"] = {"hf": "config.json + model.safetensors", "compressed": COMPRESSED_NAME}
        report["hf_form"] = (
            f"{architecture_of(model).family} configs have no field for fewer, same-size heads: "
            f"the HF files hold the same model with each head zero-padded to "
            f"{twin.config.hidden_size // twin.config.num_attention_heads} dimensions (equal "
            f"outputs, checked; attention projections full width again); {COMPRESSED_NAME} "
            f"holds the compact, faster model (prunekit.load)"
        )
        log.warning("%s", report["hf_form"])
    else:
        why = ("layers differ in width" if not uniform else
               f"{architecture_of(model).family} configs have no field for fewer, same-size heads")
        report["files"] = {"compressed": COMPRESSED_NAME}
        report["not_hf_loadable"] = f"from_pretrained cannot rebuild this model: {why}"
        log.warning("%s; writing %s only (load it with prunekit.load)",
                    report["not_hf_loadable"], COMPRESSED_NAME)  # fmt: skip
    with hf_progress_bars(progress):
        save_pretrained(twin or model, tokenizer, out_dir,
                        hf_files=result.config_describes_model or twin is not None,
                        compressed_model=model if twin is not None else None,
                        extra_files={REPORT_NAME: json.dumps(report, indent=2) + "\n"})  # fmt: skip
    return report
