"""Run a recipe: baseline, then each variant's stages, then measure and report.

Each variant starts from a copy of the baseline (or from scratch), runs its stages in order
(train, one-shot prune, iterative prune-and-retrain), is stripped of every pruning trace, and is
measured the same way as the baseline. Finished variants are kept on disk with a fingerprint of
the recipe parts that produced them, so re-running an interrupted recipe resumes where it
stopped, and changing a variant re-runs only that variant.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.data import Dataset, load_dataset
from prunekit.evaluate import layer_sparsity, measure
from prunekit.io import write_text_atomic
from prunekit.losses import resolve_loss
from prunekit.models import build_model
from prunekit.modes import eval_mode
from prunekit.recipe import (
    IterativeSpec,
    PruneSpec,
    Recipe,
    RegularizerSpec,
    ScheduleSpec,
    StructuredSpec,
    TrainSpec,
    TrainStage,
    VariantSpec,
)
from prunekit.report import write_report
from prunekit.sparse.storage import StorageError, load_state_dict
from prunekit.tasks import get_task
from prunekit.train import Distillation, fit

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass
class RunContext:
    """What every stage of one recipe run shares."""

    recipe: Recipe
    data: Dataset
    out_dir: Path
    progress: bool
    teacher: nn.Module | None = None
    trust_code: bool = False

    def loss(self, name: str | None) -> str:
        """A stage's loss: the one it names, else the data set's task's default."""
        return name or get_task(self.data.task).default_loss


def _fingerprint(*parts: Any) -> str:
    text = json.dumps([p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished_row(directory: Path, fingerprint: str) -> Row | None:
    row_file = directory / "row.json"
    if not row_file.is_file():
        return None
    row = json.loads(row_file.read_text())
    return row if row.get("fingerprint") == fingerprint else None


def _build(ctx: RunContext, spec_override: Any = None) -> nn.Module:
    spec = spec_override or ctx.recipe.model
    torch.manual_seed(ctx.recipe.seed)
    return build_model(spec.name, **spec.kwargs)


def _schedule(spec: ScheduleSpec) -> Any:
    from prunekit import schedules

    if spec.kind == "constant":
        return schedules.ConstantSparsity(
            spec.final_sparsity, spec.begin_step, spec.end_step, spec.frequency
        )
    if spec.kind == "agp":
        return schedules.agp(
            spec.initial_sparsity, spec.final_sparsity, spec.begin_step, spec.end_step,
            spec.frequency,
        )
    return schedules.PolynomialDecay(
        spec.initial_sparsity, spec.final_sparsity, spec.begin_step, spec.end_step,
        spec.power, spec.frequency,
    )


def _regularizer(
    ctx: RunContext, model: nn.Module, spec: RegularizerSpec
) -> tuple[list[Any], list[Any]]:
    """(loss terms, callbacks) for one regularizer; the proximal step is a callback."""
    from prunekit import regularizers as r

    if spec.kind == "proximal_l1":
        return [], [r.ProximalL1(spec.lam)]
    if spec.kind == "group_lasso":  # over the units structured pruning would remove
        from prunekit.structured import GroupLasso

        return [GroupLasso(model, ctx.data.x_train[:1], spec.lam)], []
    term: Callable[[], Any] = {
        "l1": lambda: r.L1(spec.lam),
        "l2": lambda: r.L2(spec.lam),
        "elastic_net": lambda: r.ElasticNet(spec.lam, spec.l2),
        "bn_scale_l1": lambda: r.BNScaleL1(spec.lam),
    }[spec.kind]
    return [term()], []


def _train(ctx: RunContext, model: nn.Module, stage: TrainStage, label: str, index: int) -> None:
    from prunekit.schedules import GradualPruning

    settings = TrainSpec(**stage.model_dump(include=set(TrainSpec.model_fields))).over(
        ctx.recipe.train
    )
    losses: list[Any] = []
    callbacks: list[Any] = []
    for reg in stage.regularizers:
        terms, cbs = _regularizer(ctx, model, reg)
        losses += terms
        callbacks += cbs
    if stage.prune is not None:
        callbacks.append(
            GradualPruning(
                _schedule(stage.prune.schedule),
                scope=stage.prune.scope,
                criterion=stage.prune.criterion,
            )
        )
    distillation = None
    if stage.distill:
        if ctx.teacher is None:
            raise ValueError(f"{label}: 'distill' needs a baseline to learn from")
        distillation = Distillation(ctx.teacher, stage.distill_alpha, stage.temperature)
    _fit(ctx, model, settings, seed=ctx.recipe.seed + index, description=label,
         regularizers=losses, callbacks=callbacks, distillation=distillation)


def _fit(
    ctx: RunContext, model: nn.Module, settings: TrainSpec, *, seed: int, description: str,
    **options: Any,
) -> None:
    """``fit`` on the run's training data with a stage's complete settings."""
    fit(
        model,
        ctx.data.x_train,
        ctx.data.y_train,
        **settings.model_dump(exclude={"loss"}),
        loss=ctx.loss(settings.loss),
        trust_code=ctx.trust_code,
        seed=seed,
        progress=ctx.progress,
        description=description,
        **options,
    )


def _prune_once(model: nn.Module, spec: PruneSpec) -> None:
    from prunekit import unstructured

    if spec.n is not None and spec.m is not None:
        from prunekit.sparse.nm import prune_nm

        prune_nm(model, spec.n, spec.m)
    elif spec.threshold is not None:
        unstructured.prune_by_threshold(model, spec.threshold)
    else:
        unstructured.prune_by_ratio(
            model, spec.sparsity, scope=spec.scope, criterion=spec.criterion
        )


def _iterate(ctx: RunContext, model: nn.Module, spec: IterativeSpec, label: str) -> None:
    from prunekit import unstructured
    from prunekit.schedules import iterative_targets

    targets = iterative_targets(spec.final_sparsity, spec.rounds)
    retrain = TrainStage(**spec.train.model_dump(exclude_none=True))
    for round_index, target in enumerate(targets):
        unstructured.prune_by_ratio(model, target, scope=spec.scope, criterion=spec.criterion)
        _train(ctx, model, retrain, f"{label} round {round_index + 1}/{len(targets)}", round_index)


def _run_stages(ctx: RunContext, model: nn.Module, variant: VariantSpec) -> None:
    for index, stage in enumerate(variant.stages):
        label = f"{variant.name}[{index}]"
        if stage.train is not None:
            _train(ctx, model, stage.train, label, index)
        elif stage.prune is not None:
            _prune_once(model, stage.prune)
        elif stage.iterative is not None:
            _iterate(ctx, model, stage.iterative, label)
        elif stage.structured is not None:
            _prune_structured(ctx, model, stage.structured)


def _prune_structured(ctx: RunContext, model: nn.Module, spec: StructuredSpec) -> None:
    """Physically remove units; data-driven criteria score on four training batches."""
    from prunekit.structured import prune_channels
    from prunekit.structured.importance import ScoringData

    x, y = ctx.data.x_train, ctx.data.y_train
    scoring = ScoringData(
        batches=[(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)],
        loss=resolve_loss(ctx.loss(ctx.recipe.train.loss), trust_code=ctx.trust_code),
    )
    prune_channels(
        model, x[:1], ratio=spec.ratio, max_macs=spec.macs_fraction, criterion=spec.criterion,
        scope=spec.scope, max_layer_ratio=spec.max_layer_ratio, round_to=spec.round_to,
        ignore=spec.ignore, data=scoring,
    )


def _measure(ctx: RunContext, name: str, model: nn.Module, loss: str, fingerprint: str) -> Row:
    from prunekit.activations import activation_sparsity, output_sparsity

    directory = ctx.out_dir / name
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
            "fingerprint": fingerprint,
        },
    ).as_row()
    write_text_atomic(directory / "row.json", json.dumps(row, indent=2) + "\n")
    return row


def _baseline(ctx: RunContext) -> tuple[nn.Module, Row]:
    recipe = ctx.recipe
    fingerprint = _fingerprint(recipe.seed, recipe.data, recipe.model, recipe.train, recipe.baseline)
    directory = ctx.out_dir / "baseline"
    model = _build(ctx)
    row = _finished_row(directory, fingerprint)
    if row is not None:
        model.load_state_dict(load_state_dict(directory / "model.safetensors"))
        log.info("baseline: reusing finished result in %s", directory)
        return model, row
    if recipe.baseline.load:
        model.load_state_dict(load_state_dict(recipe.baseline.load))
    else:
        settings = recipe.baseline.train.over(recipe.train)
        _fit(ctx, model, settings, seed=recipe.seed, description="baseline",
             checkpoint=directory / "checkpoint.pt")
    return model, _measure(ctx, "baseline", model, ctx.loss(recipe.train.loss), fingerprint)


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

    ``trust_code`` allows a ``package.module:function`` loss to be imported (it runs its code).

    >>> from prunekit.recipe import parse_recipe
    >>> r = parse_recipe({"name": "t", "data": {"name": "digits"},
    ...     "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}},
    ...     "train": {"epochs": 1}, "measure": {"repeats": 3}})
    >>> rows = run_recipe(r, "/tmp/prunekit-doctest", progress=False)
    >>> rows[0]["name"]
    'baseline'
    """
    from prunekit.masks import strip

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "recipe.json", recipe.model_dump_json(indent=2) + "\n")
    data = load_dataset(
        recipe.data.name,
        test_fraction=recipe.data.test_fraction,
        seed=recipe.seed,
        target=recipe.data.target,
        **({"path": recipe.data.path} if recipe.data.path else {}),
        **recipe.data.options,
    )
    ctx = RunContext(recipe, data, out, progress, trust_code=trust_code)
    _check_losses(ctx)
    baseline, base_row = _baseline(ctx)
    ctx.teacher = copy.deepcopy(baseline).eval()
    rows = [base_row]
    models = {"baseline": baseline}
    base_fingerprint = base_row["fingerprint"]
    for variant in recipe.variants:
        fingerprint = _fingerprint(base_fingerprint, variant, recipe.measure)
        finished = _finished_row(out / variant.name, fingerprint)
        if finished is not None:
            log.info("%s: reusing finished result", variant.name)
            rows.append(finished)
            models[variant.name] = _reload(ctx, variant)
            continue
        if variant.start == "baseline" and variant.model is None:
            model = copy.deepcopy(baseline)
        else:
            model = _build(ctx, variant.model)
        _run_stages(ctx, model, variant)
        strip(model)
        rows.append(_measure(ctx, variant.name, model, _final_loss(ctx, variant), fingerprint))
        models[variant.name] = model
    rows = _with_latency(ctx, rows, models)
    write_report(rows, out, title=recipe.name, meta={"recipe": recipe.model_dump(mode="json")})
    return rows


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
    )
    return [{**row, **timings[row["name"]]} for row in rows]
