"""What every command shares: the consoles, the one-line failure, the results table.

Every message a user sees comes through here; bad input ends with one line on stderr and exit
code 2, never a traceback; a run that could not reach what was asked ends with one line and
exit code 3.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from prunekit.report.table import cells

console = Console()
errors = Console(stderr=True)

TRUST_CODE_HELP = "allow importing the Python code a model names (file.py:factory): it runs"


def fail(message: str) -> NoReturn:
    """Print ``message`` as one error line and exit with code 2."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


COULD_NOT = 3
"""Exit code of a command that ran but could not do what was asked (``compress`` missing its
budget within the bound): distinct from 2, bad input, which runs nothing."""


def could_not(message: str) -> NoReturn:
    """Print ``message`` as one line saying what could not be done, and exit with code 3."""
    errors.print(f"[bold yellow]could not:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=COULD_NOT)


def print_table(rows: list[dict], title: str) -> None:
    """The comparison table of ``rows``, as wide as its columns need."""
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
