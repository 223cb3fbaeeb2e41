"""Run a recipe: baseline, then each variant's stages, then measure and report.

Each variant starts from a copy of the baseline (or from scratch), runs its stages in order
(train, one-shot prune, iterative prune-and-retrain, structured, compress:
:mod:`prunekit.stages`), is stripped of every pruning trace, and is measured the same way as the
baseline. Finished results are kept on disk with a fingerprint of
everything that produced them (:mod:`prunekit.resume`), so re-running an interrupted recipe
resumes where it stopped, changing a variant re-runs only that variant, and changing anything
the baseline depends on (settings, data, seed, user code, prunekit's version) re-runs it all.

Before any training, a run checks what it can: that the output folder can be written, that the
data loads, that the model builds and takes one batch of the data. Each failure is one line.

Launched by ``torchrun``, every rank runs the same stages (training under DDP, see
:func:`prunekit.train.fit`) and adopts rank 0's model after each pruning step; rank 0 alone
reads what a rerun reuses, writes every file, evaluates and times (:mod:`prunekit.distributed`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import distributed
from prunekit.data import Dataset
from prunekit.evaluate import layer_sparsity, measure
from prunekit.io import remove_stray_temporaries, write_text_atomic
from prunekit.losses import resolve_loss
from prunekit.models import build_model
from prunekit.modes import eval_mode
from prunekit.preflight import RunError, check_model_takes_data, load_data, output_folder
from prunekit.recipe import (
    ModelSpec,
    Recipe,
    VariantSpec,
)
from prunekit.report import write_report
from prunekit.resume import (
    checkpoint_for,
    file_digest,
    fingerprint,
    finished_row,
    record_row,
    tensors_digest,
)
from prunekit.runs import RunRecorder, RunStore, recording
from prunekit.runs.layers import layer_profiles, without_timing
from prunekit.sparse.storage import StorageError, load_state_dict
from prunekit.stages import RunContext, fit_stage, run_stages
from prunekit.tasks import get_task
from prunekit.user_code import require_trust, source_digest

log = logging.getLogger(__name__)

Row = dict[str, Any]

__all__ = ["RunError", "run_recipe"]


def _build(ctx: RunContext, spec_override: ModelSpec | None = None) -> nn.Module:
    spec = spec_override or ctx.recipe.model
    torch.manual_seed(ctx.recipe.seed)
    return build_model(spec.name, trust_code=ctx.trust_code, **spec.kwargs)


def _identity(recipe: Recipe, data: Dataset, trust_code: bool) -> str:
    """Fingerprint of what the recipe's text does not show: the data's contents, prunekit's
    version, and the source of every user factory (refused here if not trusted)."""
    specs = [recipe.model, *(v.model for v in recipe.variants if v.model is not None)]
    for spec in specs:
        require_trust(spec.name, trust_code=trust_code, what="model")
    return fingerprint(
        importlib.metadata.version("prunekit"),
        tensors_digest(data.x_train, data.y_train, data.x_test, data.y_test),
        {spec.name: source_digest(spec.name, trust_code=trust_code) for spec in specs},
    )


def _measure(ctx: RunContext, name: str, model: nn.Module, loss: str, wanted: str) -> Row:
    from prunekit.activations import activation_sparsity, output_sparsity

    directory = ctx.out_dir / name
    ctx.run.event("measure", variant=name)
    probe = ctx.data.x_test[:256]
    act = activation_sparsity(model, probe)
    zeros_out = None  # a class distribution's exact zeros; other tasks output no distribution
    if ctx.data.task == "classification":
        with torch.no_grad(), eval_mode(model):
            mapping = "sparsemax" if loss == "sparsemax" else "softmax"  # the map it trained for
            zeros_out = output_sparsity(model(probe), mapping)
    row = measure(
        name,
        model,
        ctx.data.x_test,
        ctx.data.y_test,
        out_dir=directory,
        task=ctx.data.task,
        loss=resolve_loss(loss, trust_code=ctx.trust_code),
        onnx="onnxruntime" in ctx.recipe.measure.backends,
        extra={
            "activation_sparsity": sum(act.values()) / len(act) if act else 0.0,
            "output_sparsity": zeros_out,
            "layer_sparsity": layer_sparsity(model),
            "fingerprint": wanted,
            "world_size": distributed.world_size(),  # the processes that trained it
        },
    ).as_row()
    return record_row(directory, row)


def _baseline(ctx: RunContext) -> tuple[nn.Module, Row]:
    recipe = ctx.recipe
    loaded = recipe.baseline.load
    trained = fingerprint(
        ctx.identity, recipe.seed, recipe.data, recipe.model, recipe.train, recipe.baseline,
        distributed.on_writer(lambda: _loaded_digest(loaded)),
    )  # fmt: skip
    wanted = fingerprint(trained, recipe.measure)
    directory = ctx.out_dir / "baseline"
    model = _build(ctx)
    loss = ctx.loss(recipe.train.loss)
    check_model_takes_data(model, ctx.data, recipe.model, loss)
    row = distributed.on_writer(lambda: finished_row(directory, wanted, "baseline"))
    if row is not None:
        if distributed.is_writer():
            model.load_state_dict(load_state_dict(directory / "model.safetensors"))
        distributed.broadcast_module(model)
        log.info("baseline: reusing finished result in %s", directory)
        return model, row
    if loaded:
        distributed.on_writer(lambda: _load_baseline(model, loaded, recipe.model.name))
        distributed.broadcast_module(model)
    else:
        settings = recipe.baseline.train.over(recipe.train)
        checkpoint = distributed.on_writer(
            lambda: str(checkpoint_for(directory, trained, "baseline")))
        fit_stage(ctx, model, settings, seed=recipe.seed, description="baseline",
                  checkpoint=checkpoint)  # fmt: skip
    distributed.check_identical(model, "baseline")
    return model, distributed.on_writer(lambda: _measure(ctx, "baseline", model, loss, wanted))


def _loaded_digest(loaded: str | None) -> str | None:
    if loaded and not Path(loaded).is_file():
        raise RunError(f"baseline.load file {loaded!r} does not exist; check the path")
    return file_digest(loaded) if loaded else None


def _load_baseline(model: nn.Module, loaded: str, name: str) -> None:
    try:
        model.load_state_dict(load_state_dict(loaded))
    except RuntimeError as err:  # keys or shapes of another model
        problem = str(err).splitlines()[0]
        raise RunError(f"baseline.load {loaded!r} does not fit model {name!r}: {problem}") from err


def _final_loss(ctx: RunContext, variant: VariantSpec) -> str:
    losses = [s.train.loss for s in variant.stages if s.train is not None and s.train.loss]
    return losses[-1] if losses else ctx.loss(ctx.recipe.train.loss)


def _check_losses(ctx: RunContext) -> None:
    """Every loss the recipe names fits the data's task (and a user's loss imports, if trusted),
    checked before any training, so a run never fails at its last variant for a typo."""
    recipe, task = ctx.recipe, get_task(ctx.data.task)
    stages = [stage for variant in recipe.variants for stage in variant.stages]
    named = [recipe.train.loss, recipe.baseline.train.loss]
    named += [s.train.loss for s in stages if s.train is not None]
    named += [s.iterative.train.loss for s in stages if s.iterative is not None]
    for name in dict.fromkeys(ctx.loss(n) for n in named):
        loss = resolve_loss(name, trust_code=ctx.trust_code)
        try:
            task.check_loss(loss)
        except ValueError as err:
            raise ValueError(f"data {recipe.data.name!r} ({task.name}): {err}") from None


def run_recipe(
    recipe: Recipe, out_dir: str | Path, *, progress: bool = True, trust_code: bool = False
) -> list[Row]:
    """Run every stage of ``recipe`` and write the report to ``out_dir``; return the rows.

    A model named as code (``file.py:factory``) and a ``package.module:function`` loss are
    imported, and so run, only with ``trust_code=True``. Under torchrun every worker calls it
    and it joins their process group; each returns the same rows.

    >>> from prunekit.recipe import parse_recipe
    >>> r = parse_recipe({"name": "t", "data": {"name": "digits"},
    ...     "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}},
    ...     "train": {"epochs": 1}, "measure": {"repeats": 3}})
    >>> rows = run_recipe(r, "/tmp/prunekit-doctest", progress=False)
    >>> rows[0]["name"]
    'baseline'
    """
    out = Path(out_dir)
    distributed.init_from_env()  # under torchrun: join its workers (a no-op otherwise)
    distributed.on_writer(lambda: str(output_folder(out)))  # made, or one line saying why not
    data = load_data(recipe)
    distributed.on_writer(lambda: _prepare(out, recipe))
    identity = _identity(recipe, data, trust_code)
    with _recording(out, recipe, fingerprint(identity, recipe)) as run:
        ctx = RunContext(recipe, data, out, progress, run, trust_code, identity)
        _check_losses(ctx)
        rows, models = _run_variants(ctx)
        return distributed.on_writer(lambda: _report(ctx, rows, models))


def _prepare(out: Path, recipe: Recipe) -> None:
    for stray in remove_stray_temporaries(out):
        log.warning("removed %s, left half-written by an interrupted run", stray)
    write_text_atomic(out / "recipe.json", recipe.model_dump_json(indent=2) + "\n")


def _recording(
    out: Path, recipe: Recipe, wanted: str
) -> contextlib.AbstractContextManager[RunRecorder]:
    """The run store's recorder on rank 0; on other ranks one that records nothing."""
    if not distributed.is_writer():
        return contextlib.nullcontext(RunRecorder(RunStore(out), None))
    return recording(out, "run", {"recipe": recipe.model_dump(mode="json")},
                     fingerprint=wanted, title=recipe.name)


def _report(ctx: RunContext, rows: list[Row], models: dict[str, nn.Module]) -> list[Row]:
    """Time every model, profile its layers, write the report and finish the record."""
    rows = _with_latency(ctx, rows, models)
    layers = _layer_profiles(ctx, models)
    rows = [{**row, "layers": [without_timing(layer) for layer in layers[row["name"]]]}
            for row in rows]
    meta = {"recipe": ctx.recipe.model_dump(mode="json"), "world_size": distributed.world_size()}
    write_report(rows, ctx.out_dir, title=ctx.recipe.name, meta=meta)
    ctx.run.finish(rows, layers=layers)
    return rows


def _run_variants(ctx: RunContext) -> tuple[list[Row], dict[str, nn.Module]]:
    """The baseline and every variant, trained (or reused), measured and timed together."""
    from prunekit.masks import strip

    recipe, out = ctx.recipe, ctx.out_dir
    ctx.run.event("stage", variant="baseline", stage=0, of=1, kind="train")
    baseline, base_row = _baseline(ctx)
    ctx.teacher = copy.deepcopy(baseline).eval()
    rows = [base_row]
    models = {"baseline": baseline}
    for variant in recipe.variants:
        ctx.run.event("variant", variant=variant.name, index=len(rows),
                      of=len(recipe.variants) + 1)
        wanted = fingerprint(base_row["fingerprint"], variant)
        finished = distributed.on_writer(
            lambda: finished_row(out / variant.name, wanted, variant.name))  # noqa: B023
        if finished is not None:
            log.info("%s: reusing finished result", variant.name)
            rows.append(finished)
            if distributed.is_writer():  # only rank 0 measures and times
                models[variant.name] = _reload(ctx, variant)
            continue
        if variant.start == "baseline" and variant.model is None:
            model = copy.deepcopy(baseline)
        else:
            model = _build(ctx, variant.model)
            spec, loss = variant.model or recipe.model, _final_loss(ctx, variant)
            check_model_takes_data(model, ctx.data, spec, loss)
        model = run_stages(ctx, model, variant)
        strip(model)
        distributed.check_identical(model, variant.name)
        loss = _final_loss(ctx, variant)
        rows.append(distributed.on_writer(
            lambda: _measure(ctx, variant.name, model, loss, wanted)))  # noqa: B023
        models[variant.name] = model
    ctx.run.event("latency", variants=len(models))
    return rows, models


def _layer_profiles(ctx: RunContext, models: dict[str, nn.Module]) -> dict[str, list[Row]]:
    """Per-layer parameters, channels kept, MACs and measured time of every variant."""
    settings = ctx.recipe.measure
    return layer_profiles(models, ctx.data.x_test[: settings.latency_batch],
                          reference="baseline", repeats=min(settings.repeats, 20),
                          threads=settings.threads)


def _reload(ctx: RunContext, variant: VariantSpec) -> nn.Module:
    """A finished variant's model, from its saved file (its shapes may differ from the spec's)."""
    from prunekit.saving import load

    path = ctx.out_dir / variant.name / "model.safetensors"
    try:
        return load(path)
    except StorageError:  # an untraceable model was saved as weights only
        model = _build(ctx, variant.model)
        model.load_state_dict(load_state_dict(path))
        return model


def _with_latency(ctx: RunContext, rows: list[Row], models: dict[str, nn.Module]) -> list[Row]:
    """Time every variant on every backend in one interleaved pass, so the ratios are fair."""
    from prunekit.latency import latency_table

    settings = ctx.recipe.measure
    timings = latency_table(
        models,
        ctx.data.x_test[: settings.latency_batch],
        backends=("torch", *settings.backends),
        onnx_files={name: ctx.out_dir / name / "model.onnx" for name in models},
        repeats=settings.repeats,
        threads=settings.threads,
        noise_reference="baseline",
    )
    return [{**row, **timings[row["name"]]} for row in rows]
