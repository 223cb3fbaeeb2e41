"""The ``prunekit`` command line: one module per command (or family), registered here.

Commands only compose library functions; every message a user sees goes through
:mod:`prunekit.cli.console`, and bad input ends with one line and exit code 2, never a traceback.
Add a command by writing a function in its own module and one ``app.command()`` line below.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from prunekit.cli import compress, dashboard, explain, hf, prune, recipes

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="prunekit: make PyTorch models smaller and faster, and prove it with measurements.",
)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """prunekit: make PyTorch models smaller and faster, and prove it."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


app.command()(recipes.validate)
app.command()(recipes.run)
app.command()(prune.prune)
app.command()(explain.explain)
app.command()(compress.sensitivity)
app.command()(compress.compress)
app.command()(hf.oneshot)
app.command()(hf.shrink)
app.command()(dashboard.dashboard)

__all__ = ["app"]
