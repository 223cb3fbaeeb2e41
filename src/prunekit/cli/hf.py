"""``prunekit oneshot`` and ``prunekit shrink``: Hugging Face models, pruned from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunekit.cli.console import console, fail

Model = Annotated[Path, typer.Argument(help="HF model folder (save_pretrained) or a .gguf file")]
Calibration = Annotated[Path, typer.Option("--calibration", help="UTF-8 text file to calibrate on")]
Out = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
Samples = Annotated[int, typer.Option("--samples", help="calibration windows")]
SeqLen = Annotated[int, typer.Option("--seq-len", help="tokens per calibration window")]
Recover = Annotated[int, typer.Option("--recover-steps", help="distillation steps afterwards")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]

_BAD_INPUT = (ValueError, FileNotFoundError, ImportError, OSError)


def oneshot(
    model: Model,
    calibration: Calibration,
    out: Out,
    method: Annotated[str, typer.Option(help="magnitude, wanda or sparsegpt")] = "wanda",
    sparsity: Annotated[float | None, typer.Option(help="unstructured sparsity, e.g. 0.5")] = None,
    nm: Annotated[str | None, typer.Option("--nm", help="N:M sparsity, e.g. 2:4")] = None,
    allocation: Annotated[str, typer.Option(help="uniform, or owl (outlier-weighted)")] = "uniform",
    samples: Samples = 32,
    seq_len: SeqLen = 256,
    recover_steps: Recover = 0,
    quiet: Quiet = False,
) -> None:
    """Prune every Linear of the transformer layers one-shot; zeros in place, HF format out."""
    from prunekit.hf.row_pruning import parse_nm
    from prunekit.hf.workflow import oneshot_to_dir

    if (sparsity is None) == (nm is None):
        fail("give exactly one of --sparsity S (e.g. 0.5) or --nm N:M (e.g. 2:4)")
    try:
        target = parse_nm(nm) if nm else None
        report = oneshot_to_dir(
            model, calibration, out, method=method, sparsity=sparsity,
            nm=(target.n, target.m) if target else None, allocation=allocation,
            samples=samples, seq_len=seq_len, recover_steps=recover_steps, progress=not quiet,
        )  # fmt: skip
    except _BAD_INPUT as exc:
        fail(str(exc))
    console.print(
        f"{report['method']} {report['target']}: {report['sparsity_of_pruned_layers']:.1%} of "
        f"{report['layer_weights']:,} layer weights are zero ({report['seconds']:.0f} s)"
    )
    console.print(f"model: {out} (from_pretrained loads it)  ·  compressed: "
                  f"{out / report['files']['compressed']}")  # fmt: skip


def shrink(
    model: Model,
    calibration: Calibration,
    out: Out,
    heads: Annotated[float, typer.Option(help="fraction of attention heads to remove")] = 0.0,
    ffn: Annotated[float, typer.Option(help="fraction of FFN units to remove")] = 0.0,
    layers: Annotated[int, typer.Option(help="number of whole layers to remove")] = 0,
    criterion: Annotated[str, typer.Option(help="magnitude, activation or taylor")] = "activation",
    non_uniform: Annotated[bool, typer.Option(help="rank units across layers")] = False,
    samples: Samples = 32,
    seq_len: SeqLen = 256,
    recover_steps: Recover = 0,
    quiet: Quiet = False,
) -> None:
    """Remove heads, FFN units and layers physically; a smaller standard HF model out."""
    from prunekit.hf.workflow import shrink_to_dir

    if not (heads or ffn or layers):
        fail("nothing to remove: give --heads, --ffn and/or --layers")
    try:
        report = shrink_to_dir(
            model, calibration, out, heads=heads, ffn=ffn, layers=layers, criterion=criterion,
            uniform=not non_uniform, samples=samples, seq_len=seq_len,
            recover_steps=recover_steps, progress=not quiet,
        )  # fmt: skip
    except _BAD_INPUT as exc:
        fail(str(exc))
    console.print(
        f"removed {report['heads_removed']}/{report['heads_total']} heads, "
        f"{report['ffn_removed']}/{report['ffn_total']} FFN units, layers "
        f"{report['layers_removed'] or 'none'}: {report['params_before']:,} → "
        f"{report['params_after']:,} parameters"
    )
    if "not_hf_loadable" in report:
        console.print(f"[bold yellow]warning:[/] {report['not_hf_loadable']}; load "
                      f"{out / report['files']['compressed']} with prunekit.load")  # fmt: skip
    elif "hf_form" in report:
        console.print(f"[bold yellow]note:[/] {report['hf_form']}")
        console.print(f"model: {out} (from_pretrained loads the padded form; "
                      f"{out / report['files']['compressed']}: the compact one)")  # fmt: skip
    else:
        console.print(f"model: {out} (from_pretrained loads it)")
