"""What a run checks before it trains, so that bad input fails in one line in the first second.

Why: a recipe that validates can still be unable to run — ``--out`` is a file or read-only, the
data file is missing, the model factory raises, the model cannot take the data's samples — and
each of these used to surface as a traceback from deep inside, sometimes minutes in. Each check
here turns one of them into a :class:`RunError` that names what, where and the fix.

>>> from prunekit.data import load_dataset
>>> from prunekit.models import build_model
>>> from prunekit.recipe import ModelSpec
>>> check_model_takes_data(build_model("lenet5"), load_dataset("digits"), ModelSpec(name="lenet5"),
...                        "cross_entropy")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
prunekit.preflight.RunError: model 'lenet5' cannot take data 'digits' (samples of shape [1, 8, 8]): RuntimeError: ...; set model.kwargs to fit the data (e.g. in_channels, in_features, num_classes)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunekit.data import Dataset, load_dataset
from prunekit.modes import eval_mode
from prunekit.recipe import ModelSpec, Recipe


class RunError(ValueError):
    """A run that cannot start or go on (output folder, data, model); the message is one line."""


def output_folder(out: Path) -> Path:
    """``out``, created, or one line saying why it cannot be (a file, under a file, read-only)."""
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunError(
            f"--out {str(out)!r}: {str(blocker)!r} is a file, not a folder; choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".prunekit-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunError(
            f"--out {str(out)!r} cannot be written ({err.strerror or err}); choose another --out"
        ) from None
    return out


def load_data(recipe: Recipe) -> Dataset:
    spec = recipe.data
    try:
        return load_dataset(
            spec.name,
            test_fraction=spec.test_fraction,
            seed=recipe.seed,
            target=spec.target,
            **({"path": spec.path} if spec.path else {}),
            **spec.options,
        )
    except (ValueError, TypeError, OSError) as err:
        raise RunError(f"data {spec.name!r} cannot be loaded: {err}") from err


def check_model_takes_data(model: nn.Module, data: Dataset, spec: ModelSpec, loss: str) -> None:
    """One eval-mode forward on two training samples, so a shape mismatch fails here in one
    line instead of deep inside the first epoch."""
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(data.x_train[:2])
    except Exception as err:  # whatever the model's forward raises on these inputs
        raise RunError(
            f"model {spec.name!r} cannot take data {data.name!r} (samples of shape "
            f"{list(data.input_shape)}): {type(err).__name__}: {str(err).splitlines()[0]}; set "
            "model.kwargs to fit the data (e.g. in_channels, in_features, num_classes)"
        ) from err
    classes = out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() == 2 else None
    classifies = data.task == "classification" and loss in ("cross_entropy", "sparsemax")
    if classifies and classes is not None and classes < data.num_classes:
        raise RunError(
            f"model {spec.name!r} outputs {classes} classes but data {data.name!r} has "
            f"{data.num_classes}; set model.kwargs (e.g. num_classes: {data.num_classes})"
        )
