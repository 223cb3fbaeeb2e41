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
    with pytest.raises(RecipeError, match=r"not valid YAML: .*\(line 2, column 1\)"):
        load_recipe(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(listing)


def _variant(stage: dict) -> dict:
    return {"variants": [{"name": "v", "stages": [stage]}]}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train": {"epochs": True}}, "train.epochs = True: Input should be a valid integer"),
        ({"train": {"lr": float("inf")}}, "train.lr = inf: Input should be a finite number"),
        ({"train": {"lr": float("nan")}}, "train.lr = nan: Input should be a finite number"),
        ({"train": {"batch_size": 32.0}}, "train.batch_size = 32.0"),
        ({"seed": -1}, "seed = -1: Input should be greater than or equal to 0"),
        ({"seed": 2**70}, "seed = 1180591620717411303424: Input should be less than or equal"),
        (_variant({"train": {"regularizers": [{"kind": "l1", "lambda": 1e-4}]}}),
         "unknown key 'variants[0].stages[0].train.regularizers[0].lambda'; did you mean 'lam'?"),
        ({"trian": {"epochs": 1}}, "unknown key 'trian'; did you mean 'train'?"),
        (_variant({"train": {"prune": {"schedule": {
            "kind": "polynomial_decay", "initial_sparsity": 0.9, "final_sparsity": 0.5,
            "end_step": 100}}}}), "initial_sparsity (0.9) is above final_sparsity (0.5)"),
        ({"data": {"name": "synthetic", "options": {"n_sample": 10}}},
         "data 'synthetic' has no option 'n_sample'; did you mean 'n_samples'?"),
        ({"data": {"name": "synthetic", "options": {"n_samples": "many"}}},
         "option 'n_samples' = 'many' must be a int"),
        ({"data": {"name": "npz", "path": "d.npz", "options": {"n_samples": 10}}}, "its options: none"),
        ({"model": {"name": "mlp", "kwargs": {"widht": 3}}}, "model 'mlp' takes no argument 'widht'"),
        ({"model": {"name": "os:system", "kwargs": {"command": "touch /tmp/x"}}}, "--trust-code"),
        ({"name": "x" * 10_000_000}, "xxx': String should have at most 200 characters"),
    ],
)  # fmt: skip
def test_strict_and_telling_errors(overrides: dict, expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(_recipe(**overrides), "r.yaml")
    message = str(info.value)
    assert expected in message and "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize(
    "name", [".", "..", "../up", "a/b", "a\\b", ".hidden", "-x", "x.", "CON", "nul.txt",
             "report.json", "Baseline", "", "x" * 65, "naïve"],
)  # fmt: skip
def test_variant_names_are_safe_folder_names(name: str) -> None:
    with pytest.raises(RecipeError, match=r"variants\[0\]\.name"):
        parse_recipe(_recipe(variants=[{"name": name}]))


def test_variant_names_that_differ_only_in_case_collide() -> None:
    with pytest.raises(RecipeError, match="ignoring case"):
        parse_recipe(_recipe(variants=[{"name": "Half"}, {"name": "half"}]))


def test_code_is_refused_without_trust_and_checked_with_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    source = tmp_path / "net.py"
    source.write_text(f"open({str(canary)!r}, 'w').write('ran')\ndef make():\n    return None\n")
    spec = _recipe(model={"name": f"{source}:make"})
    with pytest.raises(RecipeError, match="names Python code"):
        parse_recipe(spec)
    recipe = parse_recipe(spec, trust_code=True)
    assert recipe.imported_code() == [f"{source}:make"] and not canary.exists()  # not imported
    with pytest.raises(RecipeError, match="does not exist"):
        parse_recipe(_recipe(model={"name": f"{tmp_path / 'gone.py'}:make"}), trust_code=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"name: t\nname: u\nmodel: {name: lenet5}\n", "key 'name' appears twice"),
        (b"name: caf\xe9\nmodel: {name: lenet5}\n", "not UTF-8 text (byte 0xe9 on line 1)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"a: " + b"[" * 5000 + b"]" * 5000, "nesting deeper than 64 levels"),
        (b"# " + b"x" * 300_000, "too large for a recipe"),
        (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + b"".join(bytes(f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10)
                          + "]\n", "ascii") for i in range(9)) + b"name: *j\n",
         "billion laughs"),
        (b"a: &a [*a]\n", "refers to its own anchor"),
    ],
)  # fmt: skip
def test_hostile_files_fail_fast_in_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    import time

    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert time.perf_counter() - started < 10
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_yaml_merge_keys_may_override_without_counting_as_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nmodel: {name: lenet5}\ntrain: &d {lr: 0.1, epochs: 2}\n"
                    "baseline:\n  train:\n    <<: *d\n    lr: 0.01\n")
    recipe = load_recipe(path)
    assert recipe.baseline.train.lr == 0.01 and recipe.baseline.train.epochs == 2


def test_a_loss_is_a_known_name_or_a_callable_named_without_importing() -> None:
    base = {"name": "t", "model": {"name": "mlp"}}
    assert parse_recipe({**base, "train": {"loss": "mse"}}).train.loss == "mse"
    code = {**base, "train": {"loss": "no_such_pkg.losses:huber"}}
    with pytest.raises(RecipeError, match="names Python code .* pass --trust-code"):
        parse_recipe(code)  # importing a loss runs code: refused without the opt-in
    named = parse_recipe(code, trust_code=True)
    assert named.train.loss == "no_such_pkg.losses:huber"  # validated, not imported
    assert named.imported_code() == ["no_such_pkg.losses:huber"]
    with pytest.raises(RecipeError, match=r"train.loss = 'mae': unknown loss 'mae'; choose one of"):
        parse_recipe({**base, "train": {"loss": "mae"}})
    assert parse_recipe({**base, "data": {"name": "digits", "target": "input"}}).data.target == "input"
