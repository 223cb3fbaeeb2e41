"""Model zoo registry: a plain dict from name to factory, plus loading users' own factories.

A recipe names a model either by a zoo name (``lenet5``) or by a factory the user wrote,
``path/to/file.py:make_model`` or ``package.module:make_model``. Both resolve to a callable that
returns an ``nn.Module``; keyword arguments from the recipe are passed through.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {}


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Add a factory to the zoo under ``name`` (a decorator); users may register their own."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        MODELS[name] = factory
        return factory

    return decorator


def resolve_factory(spec: str) -> ModelFactory:
    """Turn a zoo name, ``file.py:factory`` or ``module:factory`` into a callable.

    >>> resolve_factory("lenet300")().__class__.__name__
    'LeNet300'
    """
    if spec in MODELS:
        return MODELS[spec]
    if ":" not in spec:
        known = ", ".join(sorted(MODELS))
        raise ValueError(
            f"model {spec!r} is not in the zoo ({known}); give a zoo name or a factory as "
            "'path/to/file.py:factory' or 'package.module:factory'"
        )
    location, _, attr = spec.rpartition(":")
    if location.endswith(".py"):
        module = _import_file(Path(location))
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise ValueError(f"model {spec!r}: cannot import module {location!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):  # a bad spec, reported like every other recipe error
        raise ValueError(  # noqa: TRY004
            f"model {spec!r}: {location!r} has no callable named {attr!r}")
    return factory


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """Build a model from a zoo name or factory spec; the result must be an ``nn.Module``."""
    model = resolve_factory(spec)(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec!r}: factory returned {type(model).__name__}, not nn.Module")
    return model


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist; check the path in 'model'")
    name = f"prunekit_user_{path.stem}_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"model file {str(path)!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
