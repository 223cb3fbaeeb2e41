"""Stage specs, validated through a whole recipe (the error names the stage's field path)."""

import pytest

from prunekit.recipe import RecipeError, parse_recipe
from prunekit.recipe_stages import DEFAULT_TRAIN, Stage, TrainSpec


def _recipe(**overrides) -> dict:
    base = {"name": "t", "model": {"name": "lenet5"}}
    base.update(overrides)
    return base


def test_unset_training_fields_fall_back_and_set_ones_win() -> None:
    spec = TrainSpec(lr=0.5).over(DEFAULT_TRAIN)
    assert spec.lr == 0.5 and spec.epochs == DEFAULT_TRAIN.epochs
    assert spec.optimizer == DEFAULT_TRAIN.optimizer


def test_a_stage_is_validated_on_its_own() -> None:
    assert Stage.model_validate({"prune": {"sparsity": 0.5}}).prune.sparsity == 0.5
    with pytest.raises(ValueError, match="exactly one of train, prune"):
        Stage.model_validate({})


@pytest.mark.parametrize(
    ("structured", "expected"),
    [
        ({"ratio": 0.5, "macs_fraction": 0.5}, "give exactly one target"),
        ({}, "give exactly one target"),
        ({"ratio": 0.5, "criterion": "vibes"}, "unknown criterion"),
        ({"macs_fraction": 0.0}, "macs_fraction = 0.0"),
        ({"ratio": 0.5, "max_layer_ratio": 1.0}, "max_layer_ratio = 1.0"),
    ],
)
def test_structured_stage_errors(structured: dict, expected: str) -> None:
    stages = [{"structured": structured}]
    with pytest.raises(RecipeError, match=expected):
        parse_recipe(_recipe(variants=[{"name": "v", "stages": stages}]), "r.yaml")


def test_structured_stage_accepts_every_option() -> None:
    spec = {"macs_fraction": 0.5, "criterion": "bn_scale", "scope": "global",
            "max_layer_ratio": 0.8, "round_to": 8, "ignore": ["features.0"]}
    recipe = parse_recipe(_recipe(variants=[{"name": "v", "stages": [{"structured": spec}]}]))
    assert recipe.variants[0].stages[0].structured.round_to == 8


def test_a_compress_stage_takes_one_budget_and_a_structured_criterion() -> None:
    def stage(**compress):
        return {"name": "t", "model": {"name": "lenet5"},
                "variants": [{"name": "v", "stages": [{"compress": compress}]}]}

    spec = parse_recipe(stage(target_latency=0.5, max_drop=1.0)).variants[0].stages[0].compress
    assert spec is not None and spec.budget() == [("latency", 0.5)] and spec.steps == 3
    with pytest.raises(RecipeError, match="exactly one budget"):
        parse_recipe(stage(target_macs=0.5, target_size=0.5, max_drop=1.0))
    with pytest.raises(RecipeError, match="max_drop"):
        parse_recipe(stage(target_macs=0.5))
    with pytest.raises(RecipeError, match="unknown criterion"):
        parse_recipe(stage(target_macs=0.5, max_drop=1.0, criterion="magnitude"))
