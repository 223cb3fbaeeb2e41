"""Keep a what-if: as a recipe stage that reproduces it, or as a pruned model file.

A stage is offered only when the recipe schema can say the choice exactly, and it is checked:
the stage is run on another copy of the variant the way ``prunekit run`` runs it, and must give
the same tensors as the what-if did. Per-group amounts that differ from each other, or
per-layer unstructured amounts, have no stage form today; those are refused with that reason
(the model file keeps them).

>>> import torch
>>> from torch import nn
>>> from prunekit.dashboard.subject import Subject
>>> from prunekit.dashboard.whatif import parse_choice
>>> net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
>>> s = Subject("r", "baseline", net, torch.zeros(1, 8), None, [], "cross_entropy", Path("."))
>>> recipe_stage(s, parse_choice({"granularity": "structured", "amount": 0.5}))["stage"]
{'structured': {'ratio': 0.5, 'criterion': 'l2', 'scope': 'layer', 'latency_aware': False}}
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from prunekit.dashboard.subject import Subject
from prunekit.dashboard.whatif import Choice, apply_choice


class NotExpressible(ValueError):
    """A choice that no recipe stage can reproduce; the message says why and what instead."""


def _stage(subject: Subject, choice: Choice) -> dict[str, Any]:
    settings: dict[str, Any]
    if choice.granularity == "unstructured":
        if choice.amount is None:
            raise NotExpressible("a recipe's prune stage gives every layer one sparsity; "
                                 "per-layer amounts can be kept as a model file instead")
        return {"prune": {"sparsity": choice.amount, "scope": choice.scope,
                          "criterion": choice.criterion}}
    if choice.amount is not None:
        settings = {"ratio": choice.amount, "criterion": choice.criterion, "scope": choice.scope,
                    "latency_aware": False}  # the what-if's counts, not the latency table's
        return {"structured": settings}
    ratios = sorted(set(choice.amounts.values()))
    if len(ratios) != 1:
        raise NotExpressible(f"a recipe's structured stage prunes its groups by one ratio, and "
                             f"these groups have {len(ratios)} ({', '.join(map(str, ratios))}); "
                             "keep them as a model file, or give them one amount")
    from prunekit.structured import build_graph

    graph = build_graph(subject.model, subject.example)
    kept = [m for g in graph.groups if str(g.index) not in choice.amounts for m in g.modules]
    return {"structured": {"ratio": ratios[0], "criterion": choice.criterion, "scope": "layer",
                           "ignore": kept, "latency_aware": False}}


def _run_stage(subject: Subject, stage: dict[str, Any]) -> nn.Module:
    """The stage applied to a fresh copy as :mod:`prunekit.pipeline` applies it."""
    from prunekit.masks import strip
    from prunekit.recipe import Stage

    spec = Stage.model_validate(stage)
    model = copy.deepcopy(subject.model)
    if spec.structured is not None:
        from prunekit.structured.latency_aware import prune_aimed

        s = spec.structured
        prune_aimed(model, subject.example, ratio=s.ratio, max_macs=s.macs_fraction,
                    max_latency=s.target_latency, latency_aware=s.latency_aware,
                    criterion=s.criterion, scope=s.scope, max_layer_ratio=s.max_layer_ratio,
                    round_to=s.round_to, ignore=s.ignore, data=subject.train_batches)
    elif spec.prune is not None and spec.prune.sparsity is not None:
        from prunekit.unstructured import prune_by_ratio

        prune_by_ratio(model, spec.prune.sparsity, scope=spec.prune.scope,
                       criterion=spec.prune.criterion)
        strip(model)
    return model


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def _variant_stages(subject: Subject, command: Any) -> list[dict[str, Any]]:
    recipe = command.get("recipe") if isinstance(command, dict) else None
    variants = (recipe or {}).get("variants", [])
    spec = next((v for v in variants if v.get("name") == subject.variant), None)
    return list(spec["stages"]) if spec else []


def recipe_stage(subject: Subject, choice: Choice, command: Any = None) -> dict[str, Any]:
    """The stage for ``choice``, checked to reproduce it, and a variant in YAML that appends it
    to the stages that made ``subject`` (``command`` is the run's recorded command)."""
    stage = _stage(subject, choice)
    if choice.criterion == "random":
        raise NotExpressible("a random criterion gives another model on every run; pick a "
                             "deterministic criterion to keep this as a stage")
    expected, _ = apply_choice(subject, choice)
    if not _same_tensors(_run_stage(subject, stage), expected):
        raise NotExpressible("the stage would not reproduce this what-if exactly (the groups "
                             "couple differently once others are kept whole); keep it as a "
                             "model file")
    variant = {"name": f"{subject.variant}-whatif",
               "stages": [*_variant_stages(subject, command), stage]}
    text = yaml.safe_dump({"variants": [variant]}, sort_keys=False)
    return {"stage": stage, "yaml": text, "verified": True}


def save_pruned(subject: Subject, choice: Choice) -> Path:
    """Save the what-if's model as ``whatif/<variant>-<hash of the choice>.safetensors`` in the
    run directory (loadable by :func:`prunekit.load`); return the path."""
    from prunekit.saving import save

    tag = hashlib.sha256(json.dumps(asdict(choice), sort_keys=True).encode()).hexdigest()[:8]
    model, _ = apply_choice(subject, choice)
    path = subject.directory / "whatif" / f"{subject.variant}-{tag}.safetensors"
    return save(model, path, format="bitmask")
