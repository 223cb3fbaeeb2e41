"""The model zoo. Importing a zoo module registers its factories in :data:`MODELS`."""

from prunekit.models import lenet  # noqa: F401  (registers mlp, lenet300, lenet5)
from prunekit.models.registry import MODELS, build_model, register, resolve_factory

__all__ = ["MODELS", "build_model", "register", "resolve_factory"]
