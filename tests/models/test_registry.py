from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.models import MODELS, build_model, register, resolve_factory


def test_user_factory_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        "from torch import nn\n"
        "def make(width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(8, width))\n"
    )
    model = build_model(f"{source}:make", width=3)
    assert model(torch.zeros(2, 8)).shape == (2, 3)


def test_user_factory_from_a_module() -> None:
    model = build_model("torch.nn:Identity")
    assert isinstance(model, nn.Identity)


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
        ("torch.nn:NoSuchThing", "has no callable named 'NoSuchThing'"),
        ("no_such_package_xyz:make", "cannot import module"),
    ],
)
def test_bad_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_factory(spec)


def test_factory_must_return_a_module() -> None:
    with pytest.raises(TypeError, match="not nn.Module"):
        build_model("builtins:dict")
