from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.models import MODELS, build_model, register, resolve_factory
from prunekit.models.registry import ModelBuildError
from prunekit.user_code import UntrustedCodeError


def test_user_factory_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        "from torch import nn\n"
        "def make(width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(8, width))\n"
    )
    model = build_model(f"{source}:make", trust_code=True, width=3)
    assert model(torch.zeros(2, 8)).shape == (2, 3)


def test_user_factory_from_a_module() -> None:
    model = build_model("torch.nn:Identity", trust_code=True)
    assert isinstance(model, nn.Identity)


def test_user_code_needs_trust_and_nothing_is_imported_without_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    source = tmp_path / "evil.py"
    source.write_text(f"open({str(canary)!r}, 'w').write('ran')\ndef make():\n    return None\n")
    for spec in (f"{source}:make", "os:system"):
        with pytest.raises(UntrustedCodeError, match="--trust-code"):
            build_model(spec)
    assert not canary.exists()


def test_register_adds_a_name() -> None:
    @register("tiny-test-net")
    def tiny() -> nn.Module:
        return nn.Linear(1, 1)

    try:
        assert isinstance(build_model("tiny-test-net"), nn.Linear)
    finally:
        MODELS.pop("tiny-test-net")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonet", "not in the zoo"),
        ("/no/such/file.py:make", "does not exist"),
        ("torch.nn:NoSuchThing", "has no attribute named 'NoSuchThing'"),
        ("no_such_package_xyz:make", "cannot import"),
        ("torch:float32", "not a callable factory"),
    ],
)
def test_bad_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_factory(spec, trust_code=True)


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("builtins:dict", {}, "returned a dict, not an nn.Module"),
        ("mlp", {"in_featurs": 4}, "takes no argument 'in_featurs'"),
        ("mlp", {"hidden": "wide"}, "the factory raised"),
    ],
)
def test_a_factory_that_fails_is_one_model_build_error(spec: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelBuildError, match=message):
        build_model(spec, trust_code=True, **kwargs)
