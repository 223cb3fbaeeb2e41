"""The vocabulary every recipe field is written in: strict models, bounded numbers, names
checked against what exists.

Why a module of its own: the recipe (:mod:`prunekit.recipe`) and its stages
(:mod:`prunekit.recipe_stages`) share these, and a field must fail the same way wherever it is
written — ``epochs: true`` is not one epoch anywhere, and an unknown name always lists the
known ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo


class Strict(BaseModel):
    """Unknown keys refused, values frozen, no coercion (``"1"`` is not 1), no inf or NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


Sparsity = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy's and torch's generators take
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]  # of a budget, strictly between 0 and 1
Scope = Literal["layer", "global"]


def one_of(name: str, known: Iterable[str], what: str) -> str:
    """``name`` if it is among ``known``; else the one-line error every recipe field gives."""
    if name not in known:
        raise ValueError(f"unknown {what}; choose one of {sorted(known)}")
    return name


def trusts_code(info: ValidationInfo) -> bool:
    """Did the caller of the validation trust code (``trust_code=True``)?"""
    return bool(info.context and info.context.get("trust_code"))
