"""One actionable line from a pydantic ``ValidationError``: where, what was given, the fix.

Why: pydantic lists every problem, in schema order, with the whole input; a user needs the one
that explains the others (a misspelt key before the "missing" it causes), the key it most likely
meant, and the value cut short (a hostile file can hold megabytes in one).
"""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 60, 60, 2


def short_repr(value: Any) -> str:
    """A value as a user wrote it, cut short (a hostile recipe may hold megabytes in one)."""
    return _REPR.repr(value)


def did_you_mean(key: Any, known: Iterable[str]) -> str | None:
    """``"; did you mean 'lam'?"`` for the closest of ``known``, or None when none is close.

    >>> did_you_mean("lambda", ["lam", "l2", "kind"])
    "; did you mean 'lam'?"
    """
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else None


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "recipe"


def _fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys ``schema`` allows at ``loc`` (a mapping's location), for suggestions."""
    model: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (through Optional, list, Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, Annotated):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


_PRIORITY = {"extra_forbidden": 0, "missing": 2}  # a typo explains the "missing" beside it


def format_error(
    error: ValidationError,
    source: str,
    schema: type[BaseModel],
    examples: Mapping[str, str] | None = None,
) -> str:
    """The most telling validation problem as one actionable line (plus how many more).

    An unknown key comes first, with the key of ``schema`` it most likely meant (a misspelt
    ``lambda`` also makes ``lam`` missing, and "lam is required" would mislead); ``examples``
    says how to add a missing key.

    >>> from pydantic import BaseModel, ConfigDict
    >>> class Reg(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     lam: float
    >>> try:
    ...     Reg.model_validate({"lambda": 0.1})
    ... except ValidationError as err:
    ...     print(format_error(err, "r.yaml", Reg))
    r.yaml: unknown key 'lambda'; did you mean 'lam'? (and 1 more problem(s))
    """
    problems = sorted(error.errors(), key=lambda p: _PRIORITY.get(p["type"], 1))
    first = problems[0]
    where = _location(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        hint = (examples or {}).get(str(first["loc"][-1]), "add it")
        line = f"{where} is required; {hint}"
    elif kind == "extra_forbidden":
        key = first["loc"][-1]
        hint = did_you_mean(key, _fields_at(schema, tuple(first["loc"][:-1])))
        line = f"unknown key {where!r}{hint or '; remove it or check its spelling'}"
    else:
        message = first["msg"].removeprefix("Value error, ")
        line = f"{where} = {short_repr(first.get('input'))}: {message}"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{source}: {line}{more}"
