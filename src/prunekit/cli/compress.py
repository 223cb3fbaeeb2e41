"""``prunekit sensitivity`` and ``prunekit compress``: where a model can give, and one budget.

Exit codes: 0 when done (and, for ``compress``, the budget met within the bound); 2 for bad
input (one line, as every command); 3 when ``compress`` ran but could not meet the budget
within the bound: its report holds every step and the best one found, and the last line says
what stopped it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from prunekit.cli.console import TRUST_CODE_HELP, console, could_not, fail, print_table

ModelOption = Annotated[str, typer.Option(
    "--model", help="zoo name, path/file.py:factory, or a prunekit model file .safetensors")]
DataOption = Annotated[str, typer.Option("--data", help="data set name or file.npz")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
WeightsOption = Annotated[Path | None, typer.Option(
    help="state dict for --model: safetensors, or any prunekit weights file")]
KwargsOption = Annotated[str, typer.Option(
    "--model-kwargs", help='zoo/factory arguments as JSON, e.g. \'{"in_channels": 1}\'')]
BaselineOption = Annotated[int, typer.Option(
    help="epochs to train a model given without weights first (0: use it as it is)")]
CriterionOption = Annotated[str, typer.Option(help="structured: l1, l2, taylor, ...; "
                                                   "unstructured: magnitude, random")]
ValidationOption = Annotated[float, typer.Option(
    help="fraction of the training split held out to score on (never trained on)")]
TrustOption = Annotated[bool, typer.Option("--trust-code", help=TRUST_CODE_HELP)]
SeedOption = Annotated[int, typer.Option(help="split and training seed")]


def _kwargs(text: str) -> dict[str, Any]:
    """``'{"in_channels": 1}'`` → its arguments, or one line saying what a JSON object is."""
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise ValueError(f"--model-kwargs {text!r}: give a JSON object, e.g. "  # noqa: TRY004
                         '\'{"in_channels": 1, "hidden": [64, 32]}\'')
    return found


def _prepared(model: str, weights: Path | None, kwargs: str, data: str, trust_code: bool,
              baseline_epochs: int, validation: float, seed: int) -> tuple[Any, Any]:
    """(model, data set): loaded, and trained first on the fit split when given untrained."""
    import torch

    from prunekit.compress.run import validation_split
    from prunekit.data import load_dataset
    from prunekit.structured.before_after import load_model
    from prunekit.tasks import get_task
    from prunekit.train import fit

    if Path(model).is_dir():
        raise ValueError(f"--model {model!r} is a folder: Hugging Face models are shrunk by "
                         "prunekit shrink (heads, FFN units, layers) on text; compress takes a "
                         "zoo name, file.py:factory or a .safetensors model")
    saved = model.endswith(".safetensors")
    if saved and kwargs:
        raise ValueError("--model-kwargs builds a zoo or factory model; a .safetensors model "
                         "carries its own architecture")
    dataset = load_dataset("npz", path=data) if data.endswith(".npz") else load_dataset(data)
    torch.manual_seed(seed)  # the same model, so a rerun finds its cached sensitivity
    net = load_model(model, weights, trust_code=trust_code, **_kwargs(kwargs))
    if weights is None and not saved and baseline_epochs > 0:
        console.print(f"{model} has no weights: training it {baseline_epochs} epochs first "
                      "(--baseline-epochs; give --weights or a .safetensors model to skip)")
        (x_fit, y_fit), _ = validation_split(dataset, validation, seed)
        fit(net, x_fit, y_fit, epochs=baseline_epochs, loss=get_task(dataset.task).default_loss,
            seed=seed, description="baseline")
    return net, dataset


def sensitivity(
    model: ModelOption,
    data: DataOption,
    out: OutOption,
    granularity: Annotated[str, typer.Option(
        help="structured (pruning groups), unstructured (weights) or both")] = "structured",
    amounts: Annotated[str, typer.Option(
        help="comma-separated fractions; default 0.25,0.5,0.75,0.9 structured, "
             "0.5,0.7,0.9,0.95 unstructured")] = "",
    criterion: Annotated[str | None, CriterionOption] = None,
    weights: WeightsOption = None,
    model_kwargs: KwargsOption = "",
    baseline_epochs: BaselineOption = 5,
    validation: ValidationOption = 0.2,
    seed: SeedOption = 0,
    trust_code: TrustOption = False,
) -> None:
    """Each layer or pruning group alone pruned one-shot at a grid of amounts, scored on
    held-out data: a table, plots, rows in the run store; cached per model and data."""
    from prunekit.compress.run import validation_split
    from prunekit.runs import fingerprint_of, record_run
    from prunekit.sensitivity import measure_sensitivity, write_sensitivity
    from prunekit.structured.importance import first_batches

    kinds = {"both": ["structured", "unstructured"]}.get(granularity, [granularity])
    if any(k not in ("structured", "unstructured") for k in kinds):
        fail(f"--granularity {granularity!r}: choose structured, unstructured or both")
    try:
        grid = tuple(float(a) for a in amounts.split(",")) if amounts else None
        net, dataset = _prepared(model, weights, model_kwargs, data, trust_code,
                                 baseline_epochs, validation, seed)
        (x_fit, y_fit), held_out = validation_split(dataset, validation, seed)
        # training batches: for data-driven criteria and BatchNorm re-estimation (never held_out)
        batches = first_batches(x_fit, y_fit)
        out.mkdir(parents=True, exist_ok=True)
        results = [
            measure_sensitivity(net, dataset.x_train[:1], held_out, granularity=kind,
                                amounts=grid, criterion=criterion, data=batches,
                                task=dataset.task, cache=out / f"sensitivity-{kind}.json")
            for kind in kinds
        ]
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    paths = write_sensitivity(results, out)
    dense = {"name": "dense", "task": dataset.task, **results[0].dense}
    command = {"model": model, "data": data, "granularity": kinds, "amounts": grid,
               "criterion": criterion, "validation": validation, "seed": seed}
    record_run(out, "sensitivity", command, fingerprint_of([r.fingerprint for r in results]),
               [dense], title=f"{model} sensitivity",
               sensitivity=[p for r in results for p in r.rows("dense")])
    console.print(paths["md"].read_text(encoding="utf-8"), markup=False)
    for result in results:
        source = "cached" if result.cached else f"{result.seconds:.1f} s"
        console.print(f"{result.granularity}: {len(result.curves)} targets ({source})")
    console.print(f"table: {paths['md']}  ·  plots: {out}/sensitivity-*.png")


def compress(
    model: ModelOption,
    data: DataOption,
    out: OutOption,
    target_macs: Annotated[float | None, typer.Option(help="fraction of the dense MACs")] = None,
    target_latency: Annotated[float | None, typer.Option(
        help="fraction of the dense latency, timed here at --batch, --threads, --backend")] = None,
    target_size: Annotated[float | None, typer.Option(help="fraction of the file size")] = None,
    target_params: Annotated[float | None, typer.Option(
        help="fraction of the parameters")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(
        help="most accuracy to lose, in percentage points (classification)")] = None,
    max_metric_drop: Annotated[float | None, typer.Option(
        help="most of the task's headline metric to lose: R² (regression), dB PSNR "
             "(reconstruction), points of accuracy (classification)")] = None,
    steps: Annotated[int, typer.Option(help="iterative prune + recover steps")] = 3,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs after each step")] = 1,
    lr: Annotated[float, typer.Option(help="fine-tuning learning rate")] = 1e-3,
    distill: Annotated[bool, typer.Option(help="recover by distillation from the dense model")] = False,
    criterion: Annotated[str, typer.Option(help="l1, l2, bn_scale, taylor, ...")] = "l2",
    max_layer_ratio: Annotated[float, typer.Option(help="most any group may lose")] = 0.9,
    round_to: Annotated[int, typer.Option(help="keep multiples of this many channels")] = 1,
    candidates: Annotated[int, typer.Option(
        help="allocations each step tries (the walk's, blends, uniform), the best by a short "
             "probe on the validation split; 1: the walk's alone")] = 3,
    batch: Annotated[int, typer.Option(help="batch latency is timed at")] = 8,
    threads: Annotated[int | None, typer.Option(help="threads latency is timed on")] = None,
    backend: Annotated[str, typer.Option(help="torch (eager) or fused (BN folded, oneDNN)")] = "torch",
    uniform: Annotated[bool, typer.Option(help="also run the uniform baseline")] = True,
    weights: WeightsOption = None,
    model_kwargs: KwargsOption = "",
    baseline_epochs: BaselineOption = 5,
    validation: ValidationOption = 0.2,
    seed: SeedOption = 0,
    trust_code: TrustOption = False,
) -> None:
    """Meet one budget within a quality bound: sensitivity, a greedy walk, iterative pruning
    with recovery; every step reported beside the uniform baseline. Exit 3: could not."""
    from prunekit.compress import Budget, Settings
    from prunekit.compress import compress as run_compress
    from prunekit.compress.report import write_compress_report

    budgets = {"macs": target_macs, "latency": target_latency, "size": target_size,
               "params": target_params}
    given = [(k, v) for k, v in budgets.items() if v is not None]
    if len(given) != 1:
        fail("give exactly one budget: --target-macs, --target-latency, --target-size or "
             "--target-params (a fraction such as 0.25)")
    if (max_accuracy_drop is None) == (max_metric_drop is None):
        fail("give one quality bound: --max-accuracy-drop PT, or --max-metric-drop X for the "
             "task's headline metric")
    try:
        budget = Budget(*given[0])  # type: ignore[arg-type]
        net, dataset = _prepared(model, weights, model_kwargs, data, trust_code,
                                 baseline_epochs, validation, seed)
        if max_accuracy_drop is not None and dataset.task not in ("classification",
                                                                  "multilabel"):
            raise ValueError(f"--max-accuracy-drop: a {dataset.task} task has no accuracy; "
                             "bound its headline metric with --max-metric-drop")
        settings = Settings(steps=steps, epochs=epochs, lr=lr, distill=distill,
                            criterion=criterion, max_layer_ratio=max_layer_ratio,
                            round_to=round_to, candidates=candidates,
                            validation=validation, threads=threads,
                            backend=backend, uniform=uniform, seed=seed)  # type: ignore[arg-type]
        out.mkdir(parents=True, exist_ok=True)
        bound = max_accuracy_drop if max_accuracy_drop is not None else max_metric_drop
        result = run_compress(net, dataset, budget, max_drop=float(bound),  # type: ignore[arg-type]
                              settings=settings, latency_input=dataset.x_test[:batch],
                              sensitivity_cache=str(out / "sensitivity-structured.json"),
                              trust_code=trust_code)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    command = {"model": model, "data": data, "budget": [budget.kind, budget.fraction],
               "max_drop": bound, "settings": settings.__dict__}
    paths = write_compress_report(result, out, title=f"{model} compress {budget.option}",
                                  command=command)
    print_table(result.rows, f"{model}: {budget.option}")
    console.print(f"{result.noise}  ·  report: {paths['md']}  ·  model: {paths['model']}")
    if not result.met:
        could_not(result.verdict)
    console.print(result.verdict)
