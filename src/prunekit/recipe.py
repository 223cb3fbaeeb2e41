"""Recipe files: a YAML description of one experiment, validated before any training starts.

A typo, a wrong type or an impossible value (sparsity 1.2, end_step before begin_step, no model)
fails in one line naming the field, the value and the fix, so that a ten-minute run never dies in
minute nine. Types are strict (``epochs: true`` is not one epoch, ``lr: .inf`` is not a rate),
a misspelt key is answered with the key it most likely meant, and the file itself is read with
bounds (:mod:`prunekit.safe_yaml`). What each stage says is :mod:`prunekit.recipe_stages`
(re-exported here). A model named as code (``file.py:factory``,
``package.module:factory``) is refused unless the caller trusts code (``trust_code=True``,
``--trust-code``): importing it runs it. See ``recipes/demo.yaml`` for a complete example.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prunekit.recipe_schema import PositiveInt, Seed, Strict, one_of, trusts_code
from prunekit.recipe_stages import (
    DEFAULT_TRAIN,
    STAGE_KINDS,
    CompressSpec,
    GradualPruneSpec,
    IterativeSpec,
    PruneSpec,
    RegularizerSpec,
    ScheduleSpec,
    Stage,
    StructuredSpec,
    TrainSpec,
    TrainStage,
)
from prunekit.safe_yaml import YamlError, load_yaml_file
from prunekit.schema_errors import did_you_mean, format_error, short_repr


class RecipeError(ValueError):
    """A recipe that cannot run; the message is one line a user can act on."""


class UntrustedRecipeError(RecipeError):
    """The recipe names code to import and the caller did not trust code (the dashboard, which
    never does, words its own refusal from this)."""


RESERVED_NAMES = frozenset(
    {"baseline", "recipe.json", "report.json", "report.md", "report.csv", "report.html"}
)
"""Variant names that would collide with what a run writes at the top of its folder."""
_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10))}
)  # Windows reserves these as file names, with any extension


class DataSpec(Strict):
    name: str = "mnist5k"
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    path: str | None = None
    target: Literal["y", "input"] = "y"  # "input": reconstruct the input (an autoencoder)
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_data(cls, name: str) -> str:
        from prunekit.data import DATASETS

        return one_of(name, DATASETS, "data set")

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


class ModelSpec(Strict):
    name: str
    kwargs: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str, info: ValidationInfo) -> str:
        from prunekit.models import MODELS
        from prunekit.user_code import check_exists, names_code, require_trust

        if names_code(name):
            require_trust(name, trust_code=trusts_code(info), what="model")
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


class VariantSpec(Strict):
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


class BaselineSpec(Strict):
    train: TrainSpec = TrainSpec()
    load: str | None = None


class MeasureSpec(Strict):
    latency_batch: PositiveInt = 1
    repeats: PositiveInt = 50
    threads: PositiveInt | None = None
    backends: list[Literal["sparse", "onnxruntime"]] = []


class Recipe(Strict):
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


__all__ = [
    "DEFAULT_TRAIN", "STAGE_KINDS", "BaselineSpec", "CompressSpec", "DataSpec", "GradualPruneSpec",
    "IterativeSpec", "MeasureSpec", "ModelSpec", "PruneSpec", "Recipe", "RecipeError",
    "RegularizerSpec", "ScheduleSpec", "Stage", "StructuredSpec", "TrainSpec", "TrainStage",
    "UntrustedRecipeError", "VariantSpec", "load_recipe", "parse_recipe",
]
