"""Prune a model and prove it: measure it before and after, save it, write the report.

This is what ``prunekit prune`` runs. Both rows are taken the same way (the skeleton's
:mod:`prunekit.evaluate`: MACs from the flop counter, median latency, parameters, the size of
the saved file, and with data the task's metrics from :mod:`prunekit.tasks`), so the report
shows what pruning bought. The compacted model is written with :func:`prunekit.save` (weights +
architecture), so :func:`prunekit.load` rebuilds it in a fresh process without the source file
that defined it. Each submodule's train/eval mode is given back as it was.

>>> import tempfile, torch
>>> from prunekit.models import build_model
>>> out = tempfile.mkdtemp()
>>> rows = prune_and_measure(build_model("lenet5"), torch.zeros(4, 1, 28, 28), out, ratio=0.5,
...                          repeats=3)
>>> [r["name"] for r in rows], rows[1]["macs"] < rows[0]["macs"]
(['before', 'after'], True)
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.data import Dataset, load_dataset
from prunekit.evaluate import count_macs, count_params, prunable_sparsity
from prunekit.latency import (
    Latency,
    NoiseBand,
    _p95,
    describe_ratio,
    fixed_threads,
    time_until_stable,
)
from prunekit.losses import Loss
from prunekit.modes import eval_mode, restore_modes
from prunekit.report import write_report
from prunekit.runs import fingerprint_of, record_run
from prunekit.runs.layers import layer_profiles, without_timing
from prunekit.structured.deploy import prepare_for_cpu
from prunekit.structured.importance import ScoringData, first_batches
from prunekit.structured.latency_aware import prune_aimed
from prunekit.tasks import evaluate_task, get_task

Row = dict[str, Any]


def _row(
    name: str, model: nn.Module, example_input: Tensor, file: Path, data: Dataset | None,
    loss: Loss | None, latency: Latency, extra: dict[str, Any],
) -> Row:
    from prunekit.saving import save

    task = data.task if data is not None else "classification"
    scores = {"accuracy": math.nan, "loss": math.nan}  # not measured without data
    if data is not None:
        scores |= evaluate_task(model, data.x_test, data.y_test, task=task, loss=loss)
    params, nonzero = count_params(model)
    with eval_mode(model):
        save(model, file)
    return {
        "name": name,
        "task": task,
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
    dataset: Dataset | None = None,
    loss: str | Loss | None = None,
    trust_code: bool = False,
    repeats: int = 20,
    deploy: bool = False,
    latency_aware: bool = False,
    threads: int | None = None,
    latency_budget_s: float = 2.0,
    title: str = "structured pruning",
    **prune_options: Any,
) -> list[Row]:
    """Measure ``model``, prune it with :func:`~.latency_aware.prune_aimed` (``prune_options``:
    ``ratio``, ``max_macs`` or ``max_latency`` and the pruner's options), measure again.

    With ``latency_aware`` (the command line's default) the channel counts come from a latency
    table measured on ``example_input`` at ``threads``, fused (an eager table was measured to
    give slower eager models here: 0.93 of the MACs ratio against the fused table's 1.01, on
    ResNet-18 on the Xeon); ``max_latency`` always measures one.
    Both models are timed round-robin with a twin of ``before`` until the noise band is narrow
    or ``latency_budget_s`` is spent (:func:`prunekit.latency.time_until_stable`): ``after`` carries the MACs ratio, the latency
    ratio, their quotient (``latency_vs_macs``: 1.0 when time falls as fast as MACs) and the
    speed-up marked "within noise" where the band holds it.

    Writes ``out_dir/model.safetensors`` (the compacted model, loadable by ``prunekit.load``)
    and ``out_dir/report.{json,md,csv,html}`` with rows ``before`` and ``after``. With a
    ``dataset``, both rows carry its task's metrics on the test split (under ``loss``, the
    task's default when None), and data-driven criteria score on four training batches (unless
    ``prune_options`` pass ``data`` themselves); without one, accuracy and loss are NaN. With
    ``deploy``, both models are timed as :func:`prepare_for_cpu` leaves them (BatchNorm folded,
    channels-last); the saved model is the plain pruned one either way.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    criterion = None
    if dataset is not None:
        criterion = get_task(dataset.task).check_loss(
            loss or get_task(dataset.task).default_loss, trust_code=trust_code
        )
        x, y = dataset.x_train, dataset.y_train
        batches = first_batches(x, y)
        prune_options.setdefault("data", ScoringData(batches, loss=criterion))
    elif loss is not None:
        raise ValueError("a loss is measured and scored on data: give the data set too (--data)")
    dense = copy.deepcopy(model)
    with restore_modes(model):  # pruning, timing, counting and saving all run the model
        report, table = prune_aimed(model, example_input, latency_aware=latency_aware,
                                    threads=threads, **prune_options)
        timed, timed_input = {"before": dense, "after": model}, example_input
        if deploy:
            timed = {k: prepare_for_cpu(copy.deepcopy(m)) for k, m in timed.items()}
            if example_input.dim() == 4:
                timed_input = example_input.to(memory_format=torch.channels_last)
        latency, band = _timed(timed, timed_input, repeats, threads, latency_budget_s)
        with tempfile.TemporaryDirectory() as scratch:
            before = _row("before", dense, example_input, Path(scratch) / "before.safetensors",
                          dataset, criterion, latency["before"], {})
        after = _row("after", model, example_input, out / "model.safetensors", dataset,
                     criterion, latency["after"], {
                         "ratio": report.ratio, "units": report.units,
                         "removed_units": report.removed, "folded_units": report.folded,
                         "prune_seconds": report.seconds, "model_file": "model.safetensors",
                     })  # fmt: skip
        speedup = before["latency_ms"] / after["latency_ms"]
        after |= {"macs_ratio": before["macs"] / after["macs"], "latency_ratio": speedup,
                  "latency_vs_macs": speedup / (before["macs"] / after["macs"]),
                  "speedup_text": describe_ratio(speedup, band), "noise_band": band.width,
                  "latency_aware": table is not None}
        if table is not None:
            after |= {"latency_table_seconds": table.seconds,
                      "latency_table_deployment": table.deployment,
                      "latency_table_fit_error": table.fit_error}
        layers = layer_profiles({"before": dense, "after": model}, example_input,
                                reference="before", repeats=min(repeats, 20))
    options = {k: (list(v) if isinstance(v, (tuple, set, frozenset)) else v)
               for k, v in prune_options.items() if k != "data"}
    if criterion is not None and dataset is not None:
        options |= {"data": dataset.name, "task": dataset.task, "loss": criterion.name}
    rows = [{**row, "layers": [without_timing(e) for e in layers[row["name"]]]}
            for row in (before, after)]
    write_report(rows, out, title=title, meta={"prune": options})
    command = {"input_shape": list(example_input.shape),
               "data": dataset.name if dataset else None, "deploy": deploy, "prune": options}
    record_run(out, "prune", command, fingerprint_of([title, command]), rows, title=title,
               layers=layers)
    return rows


def _timed(models: dict[str, nn.Module], example_input: Tensor, repeats: int,
           threads: int | None, budget_s: float) -> tuple[dict[str, Latency], NoiseBand]:
    """Each model's latency, timed with a twin of ``before``: at least ``repeats`` rounds,
    more until the band is under 3 % or ``budget_s`` is spent."""
    with contextlib.ExitStack() as modes, torch.inference_mode(), fixed_threads(threads):
        for model in models.values():
            modes.enter_context(eval_mode(model))
        runs = {name: (lambda m=model: m(example_input)) for name, model in models.items()}
        stable = time_until_stable(runs, reference="before", min_rounds=max(2, repeats),
                                   warmup=3, untimed_per_turn=1, budget_s=budget_s)
        used = torch.get_num_threads()
    latency = {name: Latency(statistics.median(stable.times[name]), _p95(stable.times[name]),
                             len(example_input), used, len(stable.times[name]))
               for name in models}
    return latency, stable.band


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


def load_model(
    model_spec: str, weights: str | Path | None = None, *, trust_code: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """The model ``prunekit prune`` starts from.

    ``model_spec`` is a zoo name, ``file.py:factory`` / ``module:factory``, or a model file
    written by :func:`prunekit.save` (``.safetensors``: rebuilt without its code, so an already
    pruned model can be pruned again). ``weights`` is a state dict for that model, in any file
    prunekit writes (dense, bitmask or CSR, through :func:`prunekit.sparse.load_state_dict`) or
    plain safetensors. A factory in user code is imported (and so run) only with ``trust_code``;
    ``model_kwargs`` are its (or the zoo model's) arguments.
    """
    from prunekit.models import build_model
    from prunekit.saving import load
    from prunekit.sparse import load_state_dict

    if model_spec.endswith(".safetensors"):
        if not Path(model_spec).is_file():
            raise FileNotFoundError(f"model file {model_spec!r} does not exist; check --model")
        model = load(model_spec)
    else:
        model = build_model(model_spec, trust_code=trust_code, **model_kwargs)
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file {str(weights)!r} does not exist")
        _load_weights(model, load_state_dict(weights), f"{weights}")
    return model


def _load_weights(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict``, with its multi-line error folded into one line that says what."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or resized:
        parts = [f"{label} {names[:3]}{' …' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected),
                                      ("different shapes", resized)) if names]
        raise ValueError(
            f"weights {source!r} do not fit the model ({'; '.join(parts)}); a model saved by "
            "prunekit.save (after pruning) is given as --model FILE.safetensors instead"
        )
    model.load_state_dict(state)


def prune_from_spec(
    model_spec: str,
    input_shape: str,
    out_dir: str | Path,
    *,
    weights: str | Path | None = None,
    data: str | None = None,
    target: Literal["y", "input"] = "y",
    loss: str | None = None,
    trust_code: bool = False,
    repeats: int = 20,
    deploy: bool = False,
    latency_aware: bool = False,
    threads: int | None = None,
    latency_budget_s: float = 2.0,
    **prune_options: Any,
) -> list[Row]:
    """``prunekit prune``: load the model (see :func:`load_model`), prune it, report.

    ``data`` names a data set (or an ``.npz`` file) for the task's metrics and for data-driven
    criteria; ``target="input"`` makes it an autoencoder's (reconstruction). ``loss`` is a loss
    name or ``package.module:function`` (which needs ``trust_code``).
    """
    shape = parse_shape(input_shape)
    model = load_model(model_spec, weights, trust_code=trust_code)
    if data is not None and data.endswith(".npz"):
        dataset = load_dataset("npz", path=data, target=target)
    elif data is not None:
        dataset = load_dataset(data, target=target)
    else:
        dataset = None
    torch.manual_seed(0)
    example = torch.randn(*shape)
    return prune_and_measure(model, example, out_dir, dataset=dataset, loss=loss,
                             trust_code=trust_code, repeats=repeats, deploy=deploy,
                             latency_aware=latency_aware, threads=threads,
                             latency_budget_s=latency_budget_s, title=f"{model_spec} structured pruning", **prune_options)
