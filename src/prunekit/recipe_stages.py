"""What one stage of a recipe variant says: train, prune, iterate, remove structure, compress.

Each spec is validated on its own before anything runs (a schedule that ends before it begins,
two pruning targets at once, a criterion that does not exist), so the error names the stage's
field; :mod:`prunekit.pipeline` runs them. Unset training fields fall back to the recipe's
``train`` (:meth:`TrainSpec.over`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from prunekit.recipe_schema import (
    Fraction,
    PositiveInt,
    Scope,
    Sparsity,
    Strict,
    one_of,
    trusts_code,
)


class TrainSpec(Strict):
    """Training settings; in a stage, unset fields fall back to the recipe's ``train``."""

    epochs: Annotated[int, Field(ge=0)] | None = None
    lr: Annotated[float, Field(gt=0.0)] | None = None
    batch_size: PositiveInt | None = None
    optimizer: Literal["sgd", "adam", "adamw"] | None = None
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    weight_decay: Annotated[float, Field(ge=0.0)] | None = None
    loss: str | None = None  # a name in prunekit.losses.LOSSES or 'package.module:function'

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str | None, info: ValidationInfo) -> str | None:
        from prunekit.losses import check_loss_name
        from prunekit.user_code import require_trust

        if name is None:
            return None
        require_trust(check_loss_name(name), trust_code=trusts_code(info), what="loss")
        return name

    def over(self, defaults: TrainSpec) -> TrainSpec:
        """These settings with unset fields taken from ``defaults``."""
        mine = self.model_dump(exclude_none=True)
        return defaults.model_copy(update=mine)


DEFAULT_TRAIN = TrainSpec(
    epochs=1, lr=1e-3, batch_size=64, optimizer="adam", momentum=0.9, weight_decay=0.0,
)  # loss unset: the data set's task's default (cross_entropy for classification, mse otherwise)


class RegularizerSpec(Strict):
    kind: Literal["l1", "l2", "elastic_net", "bn_scale_l1", "group_lasso", "proximal_l1"]
    lam: Annotated[float, Field(ge=0.0)]
    l2: Annotated[float, Field(ge=0.0)] = 0.0


class ScheduleSpec(Strict):
    kind: Literal["constant", "polynomial_decay", "agp"]
    initial_sparsity: Sparsity = 0.0
    final_sparsity: Sparsity
    begin_step: Annotated[int, Field(ge=0)] = 0
    end_step: int
    power: Annotated[float, Field(gt=0.0)] = 3.0
    frequency: PositiveInt = 100

    @model_validator(mode="after")
    def _steps_in_order(self) -> ScheduleSpec:
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                f"end_step ({self.end_step}) is before begin_step ({self.begin_step}); "
                "make end_step >= begin_step"
            )
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity ({self.initial_sparsity}) is above final_sparsity "
                f"({self.final_sparsity}); a schedule only prunes more over time"
            )
        return self


class _CriterionMixin(Strict):
    criterion: str = "magnitude"
    scope: Scope = "global"

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, name: str) -> str:
        from prunekit.criteria import CRITERIA

        return one_of(name, CRITERIA, "criterion")


class GradualPruneSpec(_CriterionMixin):
    """Prune while training, following a schedule."""

    schedule: ScheduleSpec


class PruneSpec(_CriterionMixin):
    """One-shot pruning: to a sparsity, below a magnitude threshold, or to an N:M pattern."""

    sparsity: Sparsity | None = None
    threshold: Annotated[float, Field(ge=0.0)] | None = None
    n: PositiveInt | None = None
    m: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_target(self) -> PruneSpec:
        given = [k for k in ("sparsity", "threshold", "n") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one target: 'sparsity: 0.9', 'threshold: 0.01' or 'n: 2, m: 4'"
            )
        if (self.n is None) != (self.m is None):
            raise ValueError("N:M pruning needs both 'n' and 'm', e.g. n: 2, m: 4")
        if self.n is not None and self.m is not None and self.n >= self.m:
            raise ValueError(f"n ({self.n}) must be smaller than m ({self.m})")
        return self


class IterativeSpec(_CriterionMixin):
    """Han et al.'s loop: ``rounds`` times, prune a step further, then retrain."""

    final_sparsity: Sparsity
    rounds: PositiveInt = 3
    train: TrainSpec = TrainSpec()


class StructuredSpec(Strict):
    """Remove whole channels/neurons/heads (``prunekit.structured.prune_channels``).

    Give ``ratio`` (fraction of each group's units, or of all units with ``scope: global``),
    ``macs_fraction`` (prune until MACs <= that fraction of the model's before this stage) or
    ``target_latency`` (a fraction of its latency, measured at the recipe's ``measure`` batch
    and threads). With ``latency_aware`` (the default) the channel counts come from a latency
    table measured on this machine; a ratio then stands for the MACs it would leave.
    ``round_to`` (kept channels a multiple of it) defaults to the CPU's vector width in floats
    (16 with AVX-512, else 8) when latency-aware, else to 1.
    """

    ratio: Sparsity | None = None
    macs_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    target_latency: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    latency_aware: bool = True
    criterion: str = "l2"
    scope: Scope = "layer"
    max_layer_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    round_to: PositiveInt | None = None
    ignore: list[str] = []

    @field_validator("criterion")
    @classmethod
    def _known_structured_criterion(cls, name: str) -> str:
        from prunekit.structured.importance import IMPORTANCE

        return one_of(name, IMPORTANCE, "criterion")

    @model_validator(mode="after")
    def _one_target(self) -> StructuredSpec:
        given = [k for k in ("ratio", "macs_fraction", "target_latency")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target: 'ratio: 0.5', 'macs_fraction: 0.5' or "
                             "'target_latency: 0.5'")
        return self


class CompressSpec(Strict):
    """Meet one budget within a quality bound (:func:`prunekit.compress.compress`).

    One of ``target_macs``, ``target_latency`` (timed at the recipe's ``measure`` batch and
    threads), ``target_size``, ``target_params``; ``max_drop`` is in the task's headline unit
    (accuracy points, R², dB of PSNR); ``train`` is the fine-tuning after each of ``steps``.
    """

    target_macs: Fraction | None = None
    target_latency: Fraction | None = None
    target_size: Fraction | None = None
    target_params: Fraction | None = None
    max_drop: Annotated[float, Field(ge=0.0)]
    steps: PositiveInt = 3
    train: TrainSpec = TrainSpec(epochs=1)
    distill: bool = False
    criterion: str = "l2"
    max_layer_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    round_to: PositiveInt = 1
    candidates: PositiveInt = 3
    validation: Fraction = 0.2

    _known_criterion = field_validator("criterion")(StructuredSpec._known_structured_criterion)

    @model_validator(mode="after")
    def _one_budget(self) -> CompressSpec:
        if len(self.budget()) != 1:
            raise ValueError("give exactly one budget: target_macs, target_latency, "
                             "target_size or target_params (a fraction such as 0.25)")
        return self

    def budget(self) -> list[tuple[str, float]]:
        """The budgets given, as (kind, fraction)."""
        return [(kind, value) for kind in ("macs", "latency", "size", "params")
                if (value := getattr(self, f"target_{kind}")) is not None]


class TrainStage(TrainSpec):
    regularizers: list[RegularizerSpec] = []
    prune: GradualPruneSpec | None = None
    distill: bool = False
    distill_alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    temperature: Annotated[float, Field(gt=0.0)] = 4.0


STAGE_KINDS = ("train", "prune", "iterative", "structured", "compress")


class Stage(Strict):
    """Exactly one of: train, prune, iterative, structured, compress."""

    train: TrainStage | None = None
    prune: PruneSpec | None = None
    iterative: IterativeSpec | None = None
    structured: StructuredSpec | None = None
    compress: CompressSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Stage:
        kinds = STAGE_KINDS
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a stage is exactly one of {', '.join(kinds)}; got {given or 'none'}"
            )
        return self
