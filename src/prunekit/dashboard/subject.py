"""One variant of a recorded run, loaded for a what-if: its model, inputs and held-out data.

The model comes back from its saved file through :func:`prunekit.load`, which rebuilds the
architecture from an allowlist and unpickles nothing, so exploring a run directory never runs
code found in it. The data is rebuilt from the run's own recipe (same data set, seed and
split), so a what-if's accuracy is measured on the same held-out digits as the run's table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.structured.importance import first_batches

log = logging.getLogger(__name__)

HELD_OUT = 512
"""Samples of the test split a what-if is scored on: enough to see a point of accuracy move,
few enough to answer in well under a second on a CPU."""


class SubjectError(ValueError):
    """A variant that cannot be explored; the message says why and what would do instead."""


@dataclass
class Subject:
    """A variant ready for what-ifs; ``model`` is never modified (a what-if prunes a copy)."""

    run_id: str
    variant: str
    model: nn.Module
    example: Tensor
    held_out: tuple[Tensor, Tensor] | None
    train_batches: list[tuple[Tensor, Tensor]]
    loss: str
    directory: Path
    why_no_data: str | None = None
    threads: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def _recipe_data(recipe: dict[str, Any], roots: list[Path]) -> tuple[Any, str | None]:
    from prunekit.data import load_dataset

    spec = recipe.get("data") or {}
    path = spec.get("path")
    if path and not _inside(Path(path), roots):
        return None, (f"its data file {path!r} is outside the run directories the dashboard "
                      "was given; add its folder to `prunekit dashboard` to score what-ifs")
    options = {**spec.get("options", {}), **({"path": path} if path else {})}
    data = load_dataset(spec.get("name", "mnist5k"), test_fraction=spec.get("test_fraction", 0.2),
                        seed=recipe.get("seed", 0), **options)
    return data, None


def _variant_loss(recipe: dict[str, Any], variant: str) -> str:
    """The loss the variant last trained with (a sparsemax output is scored as it trained)."""
    spec = next((v for v in recipe.get("variants", []) if v.get("name") == variant), {})
    losses = [s["train"]["loss"] for s in spec.get("stages", [])
              if s.get("train") and s["train"].get("loss")]
    return losses[-1] if losses else (recipe.get("train", {}).get("loss") or "cross_entropy")


def model_file(run: dict[str, Any], variant: str) -> Path:
    """Where ``variant``'s saved model lies in the run directory (checked to stay inside)."""
    row = next((r for r in run["rows"] if r["name"] == variant), None)
    if row is None:
        raise SubjectError(f"run {run['id']} has no variant {variant!r}")
    directory = Path(run["directory"]).resolve()
    relative = row.get("model_file") or f"{variant}/model.safetensors"
    path = (directory / relative).resolve()
    if not path.is_relative_to(directory) or not path.is_file():
        raise SubjectError(f"variant {variant!r} has no saved model in {directory} (the command "
                           "that made it kept no model file for it); pick another variant")
    return path


def load_subject(run: dict[str, Any], variant: str, roots: list[Path]) -> Subject:
    """Load ``variant`` of ``run`` (a :meth:`RunStore.run` record) and the data it was measured
    on; the data must lie inside ``roots`` to be read."""
    from prunekit.saving import load
    from prunekit.sparse.storage import StorageError

    path = model_file(run, variant)
    try:
        model = load(path).eval()
    except StorageError as exc:
        raise SubjectError(f"{path.name} of {variant!r} cannot be rebuilt without the code "
                           f"that defined it ({exc}); the dashboard never imports code") from None
    command = run["command"]
    recipe = command.get("recipe") if isinstance(command, dict) else None
    why = None
    if recipe is not None:
        data, why = _recipe_data(recipe, roots)
        measure = recipe.get("measure", {})
        batch, threads = measure.get("latency_batch", 1), measure.get("threads")
        loss = _variant_loss(recipe, variant)
    else:
        from prunekit.data import load_dataset

        name = command.get("data")
        data = load_dataset(name) if name else None
        why = None if name else "the run was measured without data (no --data)"
        batch, threads, loss = 1, None, "cross_entropy"
    if data is not None:
        example = data.x_test[:batch]
        held_out = (data.x_test[:HELD_OUT], data.y_test[:HELD_OUT])
        batches = first_batches(data.x_train, data.y_train)
    else:
        shape = command.get("input_shape")
        if not shape:
            raise SubjectError(f"run {run['id']} recorded neither its data nor an input shape")
        torch.manual_seed(0)
        example, held_out, batches = torch.randn(*shape), None, []
    return Subject(run["id"], variant, model, example, held_out, batches, loss,
                   Path(run["directory"]), why, threads)
