"""The model zoo. Importing a zoo module registers its factories in :data:`MODELS`."""

from prunekit.models import (  # noqa: F401  (each import registers its models)
    autoencoder,  # autoencoder
    conv_autoencoder,  # conv_autoencoder
    lenet,  # mlp, lenet300, lenet5
    lstm,  # lstm
    mobilenet,  # mobilenet_v2
    resnet,  # resnet18, resnet50, resnet20, resnet56
    transformer,  # tiny_transformer
    vgg,  # vgg11, vgg16
)
from prunekit.models.registry import MODELS, build_model, register, resolve_factory

__all__ = ["MODELS", "build_model", "register", "resolve_factory"]
