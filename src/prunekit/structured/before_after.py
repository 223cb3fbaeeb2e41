"""Prune a model and prove it: measure it before and after, save it, write the report.

This is what ``prunekit prune`` runs. Both rows are taken the same way (the skeleton's
:mod:`prunekit.evaluate`: MACs from the flop counter, median latency, parameters, the size of
the saved file), so the report shows what pruning bought. The compacted model is written with
:func:`prunekit.save` (weights + architecture), so :func:`prunekit.load` rebuilds it in a fresh
process without the source file that defined it.

>>> import tempfile, torch
>>> from prunekit.models import build_model
>>> out = tempfile.mkdtemp()
>>> rows = prune_and_measure(build_model("lenet5"), torch.zeros(4, 1, 28, 28), out, ratio=0.5,
...                          repeats=3)
>>> [r["name"] for r in rows], rows[1]["macs"] < rows[0]["macs"]
(['before', 'after'], True)
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.data import Dataset, load_dataset
from prunekit.evaluate import (
    count_macs,
    count_params,
    evaluate_accuracy,
    prunable_sparsity,
)
from prunekit.latency import Latency, compare_latency
from prunekit.report import write_report
from prunekit.runs import fingerprint_of, record_run
from prunekit.runs.layers import layer_profiles, without_timing
from prunekit.structured.deploy import prepare_for_cpu
from prunekit.structured.prune import prune_channels

Row = dict[str, Any]


def _row(
    name: str, model: nn.Module, example_input: Tensor, file: Path, data: Dataset | None,
    latency: Latency, extra: dict[str, Any],
) -> Row:
    from prunekit.saving import save

    scores = (
        evaluate_accuracy(model, data.x_test, data.y_test)
        if data is not None else {"accuracy": math.nan, "loss": math.nan}
    )
    params, nonzero = count_params(model)
    save(model.eval(), file)
    return {
        "name": name,
        **scores,
        "latency_ms": latency.median_ms,
        "latency_p95_ms": latency.p95_ms,
        "batch_size": latency.batch_size,
        "threads": latency.threads,
        "params": params,
        "nonzero_params": nonzero,
        "sparsity": prunable_sparsity(model),
        "macs": count_macs(model, example_input),
        "file_bytes": file.stat().st_size,
        "dense_file_bytes": file.stat().st_size,
        **extra,
    }


def prune_and_measure(
    model: nn.Module,
    example_input: Tensor,
    out_dir: str | Path,
    *,
    data: Dataset | None = None,
    repeats: int = 20,
    deploy: bool = False,
    title: str = "structured pruning",
    **prune_options: Any,
) -> list[Row]:
    """Measure ``model``, prune it with :func:`prune_channels` (``prune_options``), measure again.

    Writes ``out_dir/model.safetensors`` (the compacted model, loadable by ``prunekit.load``)
    and ``out_dir/report.{json,md,csv,html}`` with rows ``before`` and ``after``. Accuracy and
    loss are measured on ``data``'s test split when given, else reported as NaN. With
    ``deploy``, both models are timed as :func:`prepare_for_cpu` leaves them (BatchNorm folded,
    channels-last); the saved model is the plain pruned one either way.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dense = copy.deepcopy(model)
    report = prune_channels(model, example_input, **prune_options)
    timed, timed_input = {"before": dense, "after": model}, example_input
    if deploy:
        timed = {k: prepare_for_cpu(copy.deepcopy(m)) for k, m in timed.items()}
        if example_input.dim() == 4:
            timed_input = example_input.to(memory_format=torch.channels_last)
    latency = compare_latency(timed, timed_input, repeats=repeats, warmup=3)
    with tempfile.TemporaryDirectory() as scratch:
        before = _row("before", dense, example_input, Path(scratch) / "before.safetensors",
                      data, latency["before"], {})
    after = _row("after", model, example_input, out / "model.safetensors", data,
                 latency["after"], {
                     "ratio": report.ratio, "units": report.units,
                     "removed_units": report.removed, "folded_units": report.folded,
                     "prune_seconds": report.seconds, "model_file": "model.safetensors",
                 })
    options = {k: (list(v) if isinstance(v, (tuple, set, frozenset)) else v)
               for k, v in prune_options.items() if k != "data"}
    layers = layer_profiles({"before": dense, "after": model}, example_input,
                            reference="before", repeats=min(repeats, 20))
    rows = [{**row, "layers": [without_timing(e) for e in layers[row["name"]]]}
            for row in (before, after)]
    write_report(rows, out, title=title, meta={"prune": options})
    command = {"input_shape": list(example_input.shape), "data": data.name if data else None,
               "deploy": deploy, "prune": options}
    record_run(out, "prune", command, fingerprint_of([title, command]), rows, title=title,
               layers=layers)
    return rows


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,3,224,224"`` → ``(8, 3, 224, 224)``, with a clear error for anything else."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input shape {text!r}: give positive ints separated by commas, "
                         "batch first, e.g. 8,3,224,224")
    return shape


def parse_macs(text: str) -> int | float:
    """``"0.5"`` → a fraction of the dense MACs; ``"300000000"`` → an absolute count."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"max MACs {text!r}: give a fraction like 0.5 or a count like "
                         "300000000") from None


def prune_from_spec(
    model_spec: str,
    input_shape: str,
    out_dir: str | Path,
    *,
    weights: str | Path | None = None,
    data: str | None = None,
    repeats: int = 20,
    deploy: bool = False,
    trust_code: bool = False,
    **prune_options: Any,
) -> list[Row]:
    """``prunekit prune``: build ``model_spec`` (zoo name or ``file.py:factory``), prune, report.

    ``weights`` is a safetensors state dict for the model (a random init is measured
    otherwise); ``data`` names a data set for accuracy and for data-driven criteria.
    """
    from safetensors.torch import load_file

    from prunekit.models import build_model

    shape = parse_shape(input_shape)
    model = build_model(model_spec, trust_code=trust_code)
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file {str(weights)!r} does not exist")
        model.load_state_dict(load_file(str(weights)))
    dataset = load_dataset(data) if data else None
    if dataset is not None:
        batches = [(dataset.x_train[i : i + 64], dataset.y_train[i : i + 64])
                   for i in range(0, 256, 64)]
        prune_options = {"data": batches, **prune_options}
    torch.manual_seed(0)
    example = torch.randn(*shape)
    return prune_and_measure(model, example, out_dir, data=dataset, repeats=repeats,
                             deploy=deploy, title=f"{model_spec} structured pruning",
                             **prune_options)
