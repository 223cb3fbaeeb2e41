"""The ``prunekit`` command line: validate and run recipes.

Commands only compose library functions; every message a user sees comes from here, through a
rich console, and bad input ends with one line and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prunekit.recipe import RecipeError, load_recipe
from prunekit.report.table import cells

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
errors = Console(stderr=True)


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _print_table(rows: list[dict], title: str) -> None:
    header, body = cells(rows)
    table = Table(title=title)
    table.add_column(header[0], justify="left", no_wrap=True)  # variant names stay whole
    for column in header[1:]:
        table.add_column(column, justify="right")
    for row in body:
        table.add_row(*row)
    # a pipe or CI log reports 80 columns; squeezing 11 columns into them truncates every number
    needed = sum(max(len(r[i]) for r in [header, *body]) + 3 for i in range(len(header))) + 1
    wide = console if console.width >= needed else Console(width=needed)
    wide.print(table)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """prunekit: make PyTorch models smaller and faster, and prove it."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="recipe YAML file")]) -> None:
    """Check a recipe without running anything."""
    try:
        spec = load_recipe(recipe)
    except RecipeError as exc:
        _fail(str(exc))
    console.print(f"[green]ok[/] {recipe}: {spec.name}, {len(spec.variants)} variant(s)")


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("runs/out"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Run a recipe end to end and write report.json, report.md and each variant's weights."""
    from prunekit.pipeline import run_recipe

    try:
        spec = load_recipe(recipe)
    except RecipeError as exc:
        _fail(str(exc))
    try:
        rows = run_recipe(spec, out, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_table(rows, spec.name)
    console.print(f"report: {out / 'report.md'}  ·  {out / 'report.json'}")


@app.command()
def prune(
    model: Annotated[str, typer.Option("--model", help="zoo name or path/file.py:factory")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="e.g. 8,3,224,224")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
    ratio: Annotated[float | None, typer.Option(help="fraction of channels to remove")] = None,
    max_macs: Annotated[str | None, typer.Option(help="MACs target: 0.5 (fraction) or a count")] = None,
    criterion: Annotated[str, typer.Option(help="l1, l2, bn_scale, taylor, lsh, ...")] = "l2",
    scope: Annotated[str, typer.Option(help="layer or global")] = "layer",
    max_layer_ratio: Annotated[float, typer.Option(help="most any layer may lose")] = 0.9,
    round_to: Annotated[int, typer.Option(help="keep a multiple of this many channels")] = 1,
    ignore: Annotated[str, typer.Option(help="comma-separated modules to keep whole")] = "",
    weights: Annotated[Path | None, typer.Option(help="safetensors state dict to load")] = None,
    data: Annotated[str | None, typer.Option(help="data set for accuracy / data criteria")] = None,
    repeats: Annotated[int, typer.Option(help="timed latency repeats")] = 20,
    deploy: Annotated[bool, typer.Option(help="time with BN folded, channels-last")] = False,
) -> None:
    """Remove channels/neurons physically; write the compacted model and a before/after report."""
    from prunekit.structured.before_after import parse_macs, prune_from_spec

    try:
        rows = prune_from_spec(
            model, input_shape, out, weights=weights, data=data, repeats=repeats, deploy=deploy,
            ratio=ratio, max_macs=parse_macs(max_macs) if max_macs else None,
            criterion=criterion, scope=scope, max_layer_ratio=max_layer_ratio,
            round_to=round_to, ignore=[name for name in ignore.split(",") if name],
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    _print_table(rows, f"{model} structured pruning")
    console.print(f"model: {out / 'model.safetensors'}  ·  report: {out / 'report.json'}")


if __name__ == "__main__":
    app()
