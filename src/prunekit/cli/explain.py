"""``prunekit explain``: every group of units structured pruning sees, and what keeps the rest.

Nothing is cut: the command shows each group (its layers, units, channels per unit, score range
and, with ``--ratio`` or ``--max-macs``, how many units would go), every layer with units kept
whatever the target and the op or module responsible, and the submodules kept whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from prunekit.cli.console import TRUST_CODE_HELP, console, errors, fail


def _shorten(text: str, width: int = 72) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def explain(
    model: Annotated[str, typer.Option("--model", help="zoo name or path/file.py:factory")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="e.g. 1,3,224,224")],
    ratio: Annotated[float | None, typer.Option(help="plan this fraction of units")] = None,
    max_macs: Annotated[str | None, typer.Option(help="plan for 0.5 (fraction) or a count")] = None,
    criterion: Annotated[str, typer.Option(help="l1, l2, bn_scale, random, lsh")] = "l2",
    scope: Annotated[str, typer.Option(help="layer or global")] = "layer",
    max_layer_ratio: Annotated[float, typer.Option(help="most any layer may lose")] = 0.9,
    round_to: Annotated[int, typer.Option(help="keep a multiple of this many channels")] = 1,
    ignore: Annotated[str, typer.Option(help="comma-separated modules to keep whole")] = "",
    weights: Annotated[Path | None, typer.Option(help="safetensors weights to score")] = None,
    trust_code: Annotated[bool, typer.Option("--trust-code", help=TRUST_CODE_HELP)] = False,
) -> None:
    """Show the groups, scores and pins structured pruning finds; changes nothing."""
    import torch

    from prunekit.models import build_model
    from prunekit.sparse.storage import load_state_dict
    from prunekit.structured.before_after import parse_macs, parse_shape
    from prunekit.structured.explain import explain as explain_model

    try:
        shape = parse_shape(input_shape)
        net = build_model(model, trust_code=trust_code)
        if weights is not None:
            if not weights.is_file():
                raise FileNotFoundError(f"weights file {str(weights)!r} does not exist")
            net.load_state_dict(load_state_dict(weights))
        view = explain_model(
            net, torch.randn(*shape), ratio=ratio,
            max_macs=parse_macs(max_macs) if max_macs else None, scope=scope,
            max_layer_ratio=max_layer_ratio, criterion=criterion, round_to=round_to,
            ignore=[name for name in ignore.split(",") if name],
        )
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as exc:
        fail(str(exc))
    planned = view.ratio is not None
    groups = Table(title=f"{model}: {len(view.groups)} groups, "
                         f"{sum(g.units for g in view.groups)} removable units")
    for column in ("#", "layers", "units", "ch/unit", "score min", "median", "max",
                   *(["remove"] if planned else [])):
        groups.add_column(column, justify="left" if column == "layers" else "right")
    for g in view.groups:
        scored = g.scores[~np.isnan(g.scores)]
        low, mid, high = ((f"{np.min(scored):.3g}", f"{np.median(scored):.3g}",
                           f"{np.max(scored):.3g}") if len(scored) else ("—", "—", "—"))
        groups.add_row(str(g.index), _shorten(", ".join(g.modules)), str(g.units),
                       str(g.channels_per_unit), low, mid, high,
                       *([str(g.removed)] if planned else []))
    console.print(groups)
    if view.pinned:
        kept = Table(title="units kept whatever the target")
        for column in ("layer", "kept", "why"):
            kept.add_column(column, justify="right" if column == "kept" else "left")
        for p in view.pinned:
            kept.add_row(p.module, f"{p.kept}/{p.size}", "; ".join(p.reasons))
        console.print(kept)
    for name, why in view.opaque.items():
        console.print(f"kept whole: {name!r}: {why}")
    summary = f"MACs of one forward pass, over the described layers: {view.dense_macs:,.0f}"
    if planned:
        fraction = view.planned_macs / view.dense_macs if view.dense_macs else 1.0
        summary += f" → {view.planned_macs:,.0f} ({fraction:.3f}) at ratio {view.ratio:.3f}"
    console.print(summary)
    for line in view.warnings:
        errors.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
