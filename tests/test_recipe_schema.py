import pytest
from pydantic import ValidationError

from prunekit.recipe_schema import PositiveInt, Sparsity, Strict, one_of


class _Spec(Strict):
    count: PositiveInt = 1
    sparsity: Sparsity = 0.0


def test_strict_models_refuse_unknown_keys_coercion_and_non_finite_values() -> None:
    assert _Spec(count=3).count == 3
    for bad in ({"cuont": 3}, {"count": "3"}, {"count": True}, {"sparsity": float("nan")},
                {"sparsity": 1.0}, {"count": 0}):
        with pytest.raises(ValidationError):
            _Spec(**bad)
    with pytest.raises(ValidationError):
        _Spec().count = 2  # frozen


def test_one_of_names_the_known_choices() -> None:
    assert one_of("a", ["a", "b"], "thing") == "a"
    with pytest.raises(ValueError, match=r"unknown thing; choose one of \['a', 'b'\]"):
        one_of("c", ["b", "a"], "thing")
