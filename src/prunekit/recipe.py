"""Recipe files: a YAML description of one experiment, validated before any training starts.

A typo, a wrong type or an impossible value (sparsity 1.2, end_step before begin_step, no model)
fails in one line naming the field, the value and the fix, so that a ten-minute run never dies in
minute nine. Types are strict (``epochs: true`` is not one epoch, ``lr: .inf`` is not a rate),
a misspelt key is answered with the key it most likely meant, and the file itself is read with
bounds (:mod:`prunekit.safe_yaml`). A model named as code (``file.py:factory``,
``package.module:factory``) is refused unless the caller trusts code (``trust_code=True``,
``--trust-code``): importing it runs it. See ``recipes/demo.yaml`` for a complete example.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prunekit.safe_yaml import YamlError, load_yaml_file
from prunekit.schema_errors import did_you_mean, format_error, short_repr


class RecipeError(ValueError):
    """A recipe that cannot run; the message is one line a user can act on."""


class UntrustedRecipeError(RecipeError):
    """The recipe names code to import and the caller did not trust code (the dashboard, which
    never does, words its own refusal from this)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Sparsity = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy's and torch's generators take
RESERVED_NAMES = frozenset(
    {"baseline", "recipe.json", "report.json", "report.md", "report.csv", "report.html"}
)
"""Variant names that would collide with what a run writes at the top of its folder."""
_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10))}
)  # Windows reserves these as file names, with any extension


def _one_of(name: str, known: Iterable[str], what: str) -> str:
    """``name`` if it is among ``known``; else the one-line error every recipe field gives."""
    if name not in known:
        raise ValueError(f"unknown {what}; choose one of {sorted(known)}")
    return name


class DataSpec(_Strict):
    name: str = "mnist5k"
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    path: str | None = None
    target: Literal["y", "input"] = "y"  # "input": reconstruct the input (an autoencoder)
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_data(cls, name: str) -> str:
        from prunekit.data import DATASETS

        return _one_of(name, DATASETS, "data set")

    @model_validator(mode="after")
    def _npz_needs_path(self) -> DataSpec:
        if self.name == "npz" and not self.path:
            raise ValueError("data 'npz' needs 'path: file.npz' (arrays X and y)")
        return self

    @model_validator(mode="after")
    def _known_options(self) -> DataSpec:
        from prunekit.data import DATASETS

        parameters = {
            name: parameter
            for name, parameter in inspect.signature(DATASETS[self.name]).parameters.items()
            if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name not in ("seed", "path")
        }
        for key, value in self.options.items():
            if key not in parameters:
                raise ValueError(
                    f"data {self.name!r} has no option {key!r}"
                    f"{did_you_mean(key, parameters) or ''}; "
                    f"its options: {sorted(parameters) or 'none'}"
                )
            default = parameters[key].default
            if type(default) in (int, float, bool, str) and not _same_kind(value, default):
                raise ValueError(
                    f"option {key!r} = {short_repr(value)} must be a {type(default).__name__}, "
                    f"like its default {default!r}"
                )
        return self


class ModelSpec(_Strict):
    name: str
    kwargs: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str, info: ValidationInfo) -> str:
        from prunekit.models import MODELS
        from prunekit.user_code import check_exists, names_code, require_trust

        if names_code(name):
            require_trust(name, trust_code=_trusts_code(info), what="model")
            check_exists(name, "model")
        elif name not in MODELS:
            raise ValueError(
                f"not in the zoo ({', '.join(sorted(MODELS))}); "
                "or give a factory as 'file.py:factory'"
            )
        return name

    @model_validator(mode="after")
    def _zoo_arguments(self) -> ModelSpec:
        from prunekit.models import MODELS
        from prunekit.models.registry import check_arguments

        if self.name in MODELS:  # a user's factory is checked when it is imported, at run
            check_arguments(self.name, self.kwargs, MODELS[self.name])
        return self


class TrainSpec(_Strict):
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
        require_trust(check_loss_name(name), trust_code=_trusts_code(info), what="loss")
        return name

    def over(self, defaults: TrainSpec) -> TrainSpec:
        """These settings with unset fields taken from ``defaults``."""
        mine = self.model_dump(exclude_none=True)
        return defaults.model_copy(update=mine)


DEFAULT_TRAIN = TrainSpec(
    epochs=1, lr=1e-3, batch_size=64, optimizer="adam", momentum=0.9, weight_decay=0.0,
)  # loss unset: the data set's task's default (cross_entropy for classification, mse otherwise)


class RegularizerSpec(_Strict):
    kind: Literal["l1", "l2", "elastic_net", "bn_scale_l1", "group_lasso", "proximal_l1"]
    lam: Annotated[float, Field(ge=0.0)]
    l2: Annotated[float, Field(ge=0.0)] = 0.0


class ScheduleSpec(_Strict):
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


Scope = Literal["layer", "global"]


class _CriterionMixin(_Strict):
    criterion: str = "magnitude"
    scope: Scope = "global"

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, name: str) -> str:
        from prunekit.criteria import CRITERIA

        return _one_of(name, CRITERIA, "criterion")


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


class StructuredSpec(_Strict):
    """Remove whole channels/neurons/heads (``prunekit.structured.prune_channels``).

    Give ``ratio`` (fraction of each group's units, or of all units with ``scope: global``),
    ``macs_fraction`` (prune until MACs <= that fraction of the model's before this stage) or
    ``target_latency`` (a fraction of its latency, measured at the recipe's ``measure`` batch
    and threads). With ``latency_aware`` (the default) the channel counts come from a latency
    table measured on this machine; a ratio then stands for the MACs it would leave.
    """

    ratio: Sparsity | None = None
    macs_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    target_latency: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    latency_aware: bool = True
    criterion: str = "l2"
    scope: Scope = "layer"
    max_layer_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    round_to: PositiveInt = 1
    ignore: list[str] = []

    @field_validator("criterion")
    @classmethod
    def _known_structured_criterion(cls, name: str) -> str:
        from prunekit.structured.importance import IMPORTANCE

        return _one_of(name, IMPORTANCE, "criterion")

    @model_validator(mode="after")
    def _one_target(self) -> StructuredSpec:
        given = [k for k in ("ratio", "macs_fraction", "target_latency")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target: 'ratio: 0.5', 'macs_fraction: 0.5' or "
                             "'target_latency: 0.5'")
        return self


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class CompressSpec(_Strict):
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


class Stage(_Strict):
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


class VariantSpec(_Strict):
    name: str
    start: Literal["baseline", "scratch"] = "baseline"
    model: ModelSpec | None = None
    stages: list[Stage] = []

    @field_validator("name")
    @classmethod
    def _safe_folder_name(cls, name: str) -> str:
        """A variant's name is the folder its files go to: one plain path component."""
        plain = all(c.isascii() and (c.isalnum() or c in "_.+-") for c in name)
        if not 1 <= len(name) <= 64 or not plain or name[0] in ".-" or name.endswith("."):
            raise ValueError(
                "a variant name is a folder name: 1-64 of A-Z a-z 0-9 _ . + -, not starting "
                "with '.' or '-' nor ending with '.' (so '.', '..' and paths are refused)"
            )
        if name.lower() in RESERVED_NAMES or name.lower().split(".")[0] in _DEVICE_NAMES:
            raise ValueError(f"{name!r} is a name the run or the system uses; rename it")
        return name

    @model_validator(mode="after")
    def _new_model_starts_from_scratch(self) -> VariantSpec:
        if self.model is not None and self.start == "baseline":
            raise ValueError(
                "a variant with its own 'model' cannot start from the baseline's weights; "
                "add 'start: scratch'"
            )
        return self


class BaselineSpec(_Strict):
    train: TrainSpec = TrainSpec()
    load: str | None = None


class MeasureSpec(_Strict):
    latency_batch: PositiveInt = 1
    repeats: PositiveInt = 50
    threads: PositiveInt | None = None
    backends: list[Literal["sparse", "onnxruntime"]] = []


class Recipe(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]  # a title, shown in every table
    seed: Seed = 0
    data: DataSpec = DataSpec()
    model: ModelSpec
    train: TrainSpec = DEFAULT_TRAIN
    baseline: BaselineSpec = BaselineSpec()
    variants: list[VariantSpec] = []
    measure: MeasureSpec = MeasureSpec()

    @field_validator("train")
    @classmethod
    def _complete_defaults(cls, spec: TrainSpec) -> TrainSpec:
        return spec.over(DEFAULT_TRAIN)

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        names = [v.name.lower() for v in self.variants]  # case-insensitive file systems
        duplicates = sorted({v.name for v in self.variants if names.count(v.name.lower()) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique (ignoring case); rename {duplicates}")
        return self

    def imported_code(self) -> list[str]:
        """The model factories and losses this recipe imports (and so runs) when it is run.

        >>> parse_recipe({"name": "t", "model": {"name": "torch.nn:Identity"}},
        ...              trust_code=True).imported_code()
        ['torch.nn:Identity']
        """
        from prunekit.user_code import names_code

        specs = [self.model, *(v.model for v in self.variants if v.model is not None)]
        names = [spec.name for spec in specs]
        names += [spec.loss for spec in self._train_specs() if spec.loss is not None]
        return sorted({name for name in names if names_code(name)})

    def _train_specs(self) -> list[TrainSpec]:
        """Every training spec in the recipe, wherever it is nested (they may name a loss)."""
        found: list[TrainSpec] = []

        def walk(value: Any) -> None:
            if isinstance(value, TrainSpec):
                found.append(value)
            if isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(self)
        return found


_EXAMPLES = {
    "model": "add 'model: {name: lenet5}'",
    "name": "add 'name: my-experiment'",
}


def _trusts_code(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("trust_code"))


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def parse_recipe(data: Any, source: str = "recipe", *, trust_code: bool = False) -> Recipe:
    """Validate an already-loaded mapping; raises :class:`RecipeError` with one line.

    A model named as code is refused unless ``trust_code`` (nothing is imported here either way).
    """
    if not isinstance(data, dict):
        raise RecipeError(
            f"{source}: a recipe is a YAML mapping (key: value), got {type(data).__name__}"
        )
    try:
        return Recipe.model_validate(data, context={"trust_code": trust_code})
    except ValidationError as exc:
        from prunekit.user_code import UntrustedCodeError

        causes = [(error.get("ctx") or {}).get("error") for error in exc.errors()]
        untrusted = any(isinstance(cause, UntrustedCodeError) for cause in causes)
        kind = UntrustedRecipeError if untrusted else RecipeError
        raise kind(format_error(exc, source, Recipe, _EXAMPLES)) from None
    except RecursionError:
        raise RecipeError(f"{source}: nested too deeply to be a recipe") from None


def load_recipe(path: str | Path, *, trust_code: bool = False) -> Recipe:
    """Read and validate a recipe file.

    >>> load_recipe("recipes/demo.yaml").model.name
    'lenet5'
    """
    try:
        data = load_yaml_file(path)
    except YamlError as exc:
        raise RecipeError(f"recipe {exc}") from None
    return parse_recipe(data, str(path), trust_code=trust_code)
