"""``prunekit prune``: structured pruning of a model, with a before/after report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunekit.cli.console import TRUST_CODE_HELP, console, fail, print_table


def prune(
    model: Annotated[str, typer.Option(
        "--model", help="zoo name, path/file.py:factory, or a prunekit model file .safetensors")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="e.g. 8,3,224,224")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    ratio: Annotated[float | None, typer.Option(help="fraction of channels to remove")] = None,
    max_macs: Annotated[str | None, typer.Option(help="MACs target: 0.5 (fraction) or a count")] = None,
    target_latency: Annotated[float | None, typer.Option(
        help="latency target: a fraction of the dense model's, measured here")] = None,
    latency_aware: Annotated[bool, typer.Option(
        "--latency-aware/--uniform",
        help="choose the channel counts from this machine's measured latency table (a ratio "
             "then stands for the MACs it would leave), or cut each group by the ratio")] = True,
    threads: Annotated[int | None, typer.Option(help="threads to measure and time on")] = None,
    latency_budget: Annotated[float, typer.Option(
        help="seconds of timing at most, until the noise band is under 3 %")] = 10.0,
    criterion: Annotated[str, typer.Option(help="l1, l2, bn_scale, taylor, lsh, ...")] = "l2",
    scope: Annotated[str, typer.Option(help="layer or global")] = "layer",
    max_layer_ratio: Annotated[float, typer.Option(help="most any layer may lose")] = 0.9,
    round_to: Annotated[int | None, typer.Option(
        help="keep a multiple of this many channels (default latency-aware: the CPU's vector "
             "width, 16 with AVX-512, else 8; otherwise 1)")] = None,
    ignore: Annotated[str, typer.Option(help="comma-separated modules to keep whole")] = "",
    weights: Annotated[Path | None, typer.Option(
        help="state dict for --model: safetensors, or any prunekit weights file")] = None,
    data: Annotated[str | None, typer.Option(
        help="data set name or file.npz: the task's metrics, and data criteria")] = None,
    target: Annotated[str, typer.Option(
        help="y (the data's targets) or input (an autoencoder reconstructs its input)")] = "y",
    loss: Annotated[str | None, typer.Option(
        help="mse, l1, bce_with_logits, cross_entropy, ... or package.module:function; "
             "default: the task's")] = None,
    repeats: Annotated[int, typer.Option(help="timed latency repeats")] = 20,
    deploy: Annotated[bool, typer.Option(help="time with BN folded, channels-last")] = False,
    trust_code: Annotated[bool, typer.Option("--trust-code", help=TRUST_CODE_HELP)] = False,
) -> None:
    """Remove channels/neurons physically; write the compacted model and a before/after report."""
    from prunekit.structured.before_after import parse_macs, prune_from_spec

    if target not in ("y", "input"):
        fail(f"--target {target!r}: choose 'y' (the data's targets) or 'input' (an autoencoder)")
    try:
        rows = prune_from_spec(
            model, input_shape, out, weights=weights, data=data,
            target=target,  # type: ignore[arg-type]
            loss=loss, trust_code=trust_code, repeats=repeats, deploy=deploy, ratio=ratio,
            max_macs=parse_macs(max_macs) if max_macs else None, max_latency=target_latency,
            latency_aware=latency_aware, threads=threads, latency_budget_s=latency_budget,
            criterion=criterion,
            scope=scope, max_layer_ratio=max_layer_ratio, round_to=round_to,
            ignore=[name for name in ignore.split(",") if name],
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    print_table(rows, f"{model} structured pruning")
    after = rows[1]
    console.print(f"MACs {after['macs_ratio']:.2f}× fewer, {after['speedup_text']} faster "
                  f"(latency ratio {after['latency_vs_macs']:.2f} of the MACs ratio; noise band "
                  f"±{100 * after['noise_band']:.1f} %; channel counts "
                  f"{'from the measured latency table' if after['latency_aware'] else 'uniform'})")
    console.print(f"model: {out / 'model.safetensors'}  ·  report: {out / 'report.json'}")
