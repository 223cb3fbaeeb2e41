from pathlib import Path

import pytest
import yaml

from prunekit.recipe import RecipeError, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]


def _recipe(**overrides) -> dict:
    base = {"name": "t", "model": {"name": "lenet5"}}
    base.update(overrides)
    return base


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")))
def test_shipped_recipes_validate(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.variants


def test_stage_train_settings_fall_back_to_recipe_defaults() -> None:
    recipe = parse_recipe(_recipe(train={"lr": 0.01, "epochs": 2}))
    assert recipe.train.lr == 0.01 and recipe.train.batch_size == 64
    assert recipe.train.optimizer == "adam"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # unknown key
        ({"trian": {"epochs": 1}}, "unknown key 'trian'"),
        # wrong type
        ({"train": {"epochs": "many"}}, "train.epochs = 'many'"),
        # impossible sparsity
        (
            {"variants": [{"name": "v", "stages": [{"prune": {"sparsity": 1.2}}]}]},
            "variants[0].stages[0].prune.sparsity = 1.2: Input should be less than 1",
        ),
        # end_step before begin_step
        (
            {"variants": [{"name": "v", "stages": [{"train": {"prune": {"schedule": {
                "kind": "polynomial_decay", "final_sparsity": 0.9,
                "begin_step": 100, "end_step": 10}}}}]}]},
            "end_step (10) is before begin_step (100)",
        ),
        ({"model": {"name": "resnet9000"}}, "model.name = 'resnet9000': not in the zoo"),
        ({"data": {"name": "imagenet"}}, "data.name = 'imagenet': unknown data set"),
        (
            {"variants": [{"name": "v", "stages": [{"prune": {"sparsity": 0.5, "criterion": "vibes"}}]}]},
            "unknown criterion",
        ),
        (
            {"variants": [{"name": "v", "stages": [{"prune": {"n": 4, "m": 2}}]}]},
            "n (4) must be smaller than m (2)",
        ),
        (
            {"variants": [{"name": "v", "stages": [{"train": {}, "prune": {"sparsity": 0.5}}]}]},
            "a stage is exactly one of train, prune, iterative",
        ),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "rename ['a']"),
        ({"data": {"name": "npz"}}, "needs 'path"),
    ],
)
def test_bad_recipes_fail_in_one_line_naming_field_value_and_fix(overrides, expected) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(_recipe(**overrides), "r.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and message.startswith("r.yaml: ")


def test_missing_model_says_how_to_add_it() -> None:
    with pytest.raises(RecipeError, match=r"model is required; add 'model: \{name: lenet5\}'"):
        parse_recipe({"name": "t"})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML at line"):
        load_recipe(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(listing)


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


def test_a_loss_is_a_known_name_or_a_callable_named_without_importing() -> None:
    base = {"name": "t", "model": {"name": "mlp"}}
    assert parse_recipe({**base, "train": {"loss": "mse"}}).train.loss == "mse"
    named = parse_recipe({**base, "train": {"loss": "no_such_pkg.losses:huber"}})
    assert named.train.loss == "no_such_pkg.losses:huber"  # validated, not imported
    with pytest.raises(RecipeError, match=r"train.loss = 'mae': unknown loss 'mae'; choose one of"):
        parse_recipe({**base, "train": {"loss": "mae"}})
    assert parse_recipe({**base, "data": {"name": "digits", "target": "input"}}).data.target == "input"
