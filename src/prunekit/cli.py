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


if __name__ == "__main__":
    app()
