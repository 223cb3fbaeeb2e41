"""The stages of a recipe variant, run on its model: train, prune, iterate, structured, compress.

Why apart from :mod:`prunekit.pipeline`: the pipeline decides *what* runs (baseline, variants,
what a rerun may reuse) and this module *how* one stage turns its validated spec
(:mod:`prunekit.recipe_stages`) into calls of the library — schedules, regularizers,
distillation, one-shot and iterative pruning, structured removal, :func:`prunekit.compress.compress`.
Under ``torchrun`` every rank runs the same stages and adopts rank 0's model after each one
(:func:`prunekit.distributed.adopt_writer_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from prunekit import distributed
from prunekit.data import Dataset
from prunekit.io import write_text_atomic
from prunekit.losses import resolve_loss
from prunekit.recipe import (
    STAGE_KINDS,
    CompressSpec,
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
from prunekit.runs import RunRecorder
from prunekit.tasks import get_task
from prunekit.train import Distillation, fit

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What every stage of one recipe run shares."""

    recipe: Recipe
    data: Dataset
    out_dir: Path
    progress: bool
    run: RunRecorder
    trust_code: bool = False
    identity: str = ""
    teacher: nn.Module | None = None

    def loss(self, name: str | None) -> str:
        """A stage's loss: the one it names, else the data set's task's default."""
        return name or get_task(self.data.task).default_loss


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

    # the stage was validated when the recipe was read; a loss naming code is gated at use
    own = stage.model_dump(include=set(TrainSpec.model_fields), exclude_none=True)
    settings = TrainSpec.model_construct(**own).over(ctx.recipe.train)
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
    fit_stage(ctx, model, settings, seed=ctx.recipe.seed + index, description=label,
         regularizers=losses, callbacks=callbacks, distillation=distillation)


def fit_stage(
    ctx: RunContext, model: nn.Module, settings: TrainSpec, *, seed: int, description: str,
    **options: Any,
) -> None:
    """``fit`` on the run's training data with a stage's complete settings."""
    epochs, steps = settings.epochs or 0, -(-len(ctx.data.x_train) // (settings.batch_size or 1))
    watch = ctx.run.training(description, epochs=epochs, steps=epochs * steps)
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
        **{**options, "callbacks": [*options.get("callbacks", ()), watch]},
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
        distributed.adopt_writer_model(model, f"{label} round {round_index + 1}")
        _train(ctx, model, retrain, f"{label} round {round_index + 1}/{len(targets)}", round_index)


def run_stages(ctx: RunContext, model: nn.Module, variant: VariantSpec) -> nn.Module:
    """Run the variant's stages on ``model``; return the model they leave (a ``compress``
    stage hands back the step it chose, which may not be the last one it tried)."""
    for index, stage in enumerate(variant.stages):
        label = f"{variant.name}[{index}]"
        kind = next(k for k in STAGE_KINDS if getattr(stage, k) is not None)
        ctx.run.event("stage", variant=variant.name, stage=index, of=len(variant.stages), kind=kind)
        if stage.train is not None:
            _train(ctx, model, stage.train, label, index)
        elif stage.prune is not None:
            _prune_once(model, stage.prune)
        elif stage.iterative is not None:
            _iterate(ctx, model, stage.iterative, label)
        elif stage.structured is not None:
            _prune_structured(ctx, model, stage.structured)
        elif stage.compress is not None:
            model = _compress(ctx, model, stage.compress, variant.name)
        distributed.adopt_writer_model(model, label)
    return model


def _compress(ctx: RunContext, model: nn.Module, spec: CompressSpec, variant: str) -> nn.Module:
    """Meet the stage's budget (:func:`prunekit.compress.compress`); its path and verdict go
    to ``<variant>/compress.md`` and the run's events, and a missed budget is logged loudly.

    The recipe's baseline trained on the whole training split, so a validation split of it
    would score training samples: the bound is judged on the test split the report shows."""
    from prunekit.compress import Budget, Settings, compress
    from prunekit.compress.report import path_table

    settings = spec.train.over(ctx.recipe.train)
    measure = ctx.recipe.measure
    kind, fraction = spec.budget()[0]
    directory = ctx.out_dir / variant
    directory.mkdir(parents=True, exist_ok=True)
    result = compress(
        model, ctx.data, Budget(kind, fraction), max_drop=spec.max_drop,  # type: ignore[arg-type]
        settings=Settings(
            steps=spec.steps, epochs=settings.epochs or 0, lr=settings.lr or 1e-3,
            batch_size=settings.batch_size or 64, optimizer=settings.optimizer or "adam",
            loss=ctx.loss(settings.loss), distill=spec.distill, criterion=spec.criterion,
            max_layer_ratio=spec.max_layer_ratio, round_to=spec.round_to,
            candidates=spec.candidates, validation=spec.validation, threads=measure.threads,
            uniform=False,
            seed=ctx.recipe.seed,
        ),
        latency_input=ctx.data.x_test[: measure.latency_batch],
        sensitivity_cache=str(directory / "sensitivity-structured.json"),
        held_out=(ctx.data.x_test, ctx.data.y_test),  # the baseline trained on all of train
        trust_code=ctx.trust_code, progress=ctx.progress,
    )
    write_text_atomic(directory / "compress.md",
                      f"{path_table(result)}\n{result.noise}\n\n{result.verdict}\n")
    ctx.run.event("compress", variant=variant, met=result.met, verdict=result.verdict)
    (log.info if result.met else log.warning)("%s: %s", variant, result.verdict)
    return result.model


def _prune_structured(ctx: RunContext, model: nn.Module, spec: StructuredSpec) -> None:
    """Physically remove units (counts from the latency table unless the stage says not);
    data-driven criteria score on four training batches."""
    from prunekit.structured.importance import ScoringData, first_batches
    from prunekit.structured.latency_aware import prune_aimed

    x, y = ctx.data.x_train, ctx.data.y_train
    scoring = ScoringData(
        batches=first_batches(x, y),
        loss=resolve_loss(ctx.loss(ctx.recipe.train.loss), trust_code=ctx.trust_code),
    )
    measure = ctx.recipe.measure
    prune_aimed(
        model, ctx.data.x_test[: measure.latency_batch], ratio=spec.ratio,
        max_macs=spec.macs_fraction, max_latency=spec.target_latency,
        latency_aware=spec.latency_aware, threads=measure.threads, criterion=spec.criterion,
        scope=spec.scope, max_layer_ratio=spec.max_layer_ratio, round_to=spec.round_to,
        ignore=spec.ignore, data=scoring,
    )
