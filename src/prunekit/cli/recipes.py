"""``prunekit validate`` and ``prunekit run``: check a recipe, run it end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunekit.cli.console import console, fail, print_table
from prunekit.recipe import RecipeError, load_recipe


def validate(recipe: Annotated[Path, typer.Argument(help="recipe YAML file")]) -> None:
    """Check a recipe without running anything."""
    try:
        spec = load_recipe(recipe)
    except RecipeError as exc:
        fail(str(exc))
    console.print(f"[green]ok[/] {recipe}: {spec.name}, {len(spec.variants)} variant(s)")


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
        fail(str(exc))
    try:
        rows = run_recipe(spec, out, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    print_table(rows, spec.name)
    console.print(f"report: {out / 'report.md'}  ·  {out / 'report.json'}")
