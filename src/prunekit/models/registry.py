"""Model zoo registry: a plain dict from name to factory, plus users' own factories.

A recipe names a model either by a zoo name (``lenet5``) or by a factory the user wrote,
``path/to/file.py:make_model`` or ``package.module:make_model``. Both resolve to a callable that
returns an ``nn.Module``; keyword arguments from the recipe are passed through. A factory of the
user's is code: it is imported only with ``trust_code=True`` (:mod:`prunekit.user_code`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from prunekit.user_code import import_object, names_code

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {}


class ModelBuildError(ValueError):
    """A model spec that cannot give a model: unknown, bad arguments, or a factory that failed."""


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Add a factory to the zoo under ``name`` (a decorator); users may register their own.

    >>> from prunekit.models import MODELS, build_model, register
    >>> @register("doc-net")
    ... def doc_net(width: int = 2) -> nn.Module:
    ...     return nn.Linear(width, width)
    >>> build_model("doc-net", width=3).out_features
    3
    >>> _ = MODELS.pop("doc-net")
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        MODELS[name] = factory
        return factory

    return decorator


def resolve_factory(spec: str, *, trust_code: bool = False) -> ModelFactory:
    """Turn a zoo name, ``file.py:factory`` or ``module:factory`` into a callable.

    A factory of the user's is imported only with ``trust_code=True``; without it the spec is
    refused before anything is imported.

    >>> from prunekit.models import resolve_factory
    >>> resolve_factory("lenet300")().__class__.__name__
    'LeNet300'
    """
    if spec in MODELS:
        return MODELS[spec]
    if not names_code(spec):
        known = ", ".join(sorted(MODELS))
        raise ModelBuildError(
            f"model {spec!r} is not in the zoo ({known}); give a zoo name or a factory as "
            "'path/to/file.py:factory' or 'package.module:factory'"
        )
    factory = import_object(spec, trust_code=trust_code, what="model")
    if not callable(factory):
        raise ModelBuildError(f"model {spec!r}: {type(factory).__name__} is not a callable factory")
    return factory


def check_arguments(spec: str, kwargs: Mapping[str, Any], factory: ModelFactory) -> None:
    """Refuse keyword arguments ``factory`` does not take, naming the ones it does.

    >>> from prunekit.models import MODELS
    >>> check_arguments("mlp", {"widht": 3}, MODELS["mlp"])
    Traceback (most recent call last):
    ...
    prunekit.models.registry.ModelBuildError: model 'mlp' takes no argument 'widht' (it takes: hidden, in_features, num_classes)
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: trust it
        return
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        named = sorted(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)
        unknown = sorted(set(kwargs) - set(named))
        problem = f"takes no argument {unknown[0]!r}" if unknown else f"cannot be called: {err}"
        raise ModelBuildError(f"model {spec!r} {problem} (it takes: {', '.join(named)})") from None


def build_model(spec: str, *, trust_code: bool = False, **kwargs: Any) -> nn.Module:
    """Build a model from a zoo name or factory spec; the result must be an ``nn.Module``.

    Whatever goes wrong — an argument the factory does not take, a factory that raises or
    returns something else — is one :class:`ModelBuildError` naming the spec.

    >>> from prunekit.models import build_model
    >>> build_model("mlp", in_features=4).net[1].in_features
    4
    """
    factory = resolve_factory(spec, trust_code=trust_code)
    check_arguments(spec, kwargs, factory)
    try:
        model = factory(**kwargs)
    except Exception as err:  # the factory is the user's (or takes the user's arguments)
        raise ModelBuildError(
            f"model {spec!r}: the factory raised {type(err).__name__}: {err}"
        ) from err
    if not isinstance(model, nn.Module):
        raise ModelBuildError(
            f"model {spec!r}: the factory returned a {type(model).__name__}, not an nn.Module"
        )
    return model
