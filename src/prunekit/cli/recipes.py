"""``prunekit validate`` and ``prunekit run``: check a recipe, run it end to end.

``prunekit run --nproc N`` is ``torchrun --standalone --nproc-per-node N -m prunekit run``: it
checks the recipe, then hands the process over to torchrun. Under torchrun, every worker runs
the recipe together (:mod:`prunekit.distributed`) and rank 0 alone prints.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from prunekit.cli.console import TRUST_CODE_HELP, console, fail, print_table
from prunekit.recipe import Recipe, RecipeError, load_recipe

TrustCode = Annotated[bool, typer.Option("--trust-code", help=TRUST_CODE_HELP)]


def _load(recipe: Path, trust_code: bool) -> Recipe:
    try:
        return load_recipe(recipe, trust_code=trust_code)
    except RecipeError as exc:
        fail(str(exc))


def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    trust_code: TrustCode = False,
) -> None:
    """Check a recipe without running anything (nothing it names is imported)."""
    spec = _load(recipe, trust_code)
    console.print(f"[green]ok[/] {recipe}: {spec.name}, {len(spec.variants)} variant(s)")
    for code in spec.imported_code():
        console.print(f"[yellow]note:[/] running it imports and runs Python code: {code}")


def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("runs/out"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    trust_code: TrustCode = False,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="train on N local processes (runs torchrun --standalone)")] = 1,
) -> None:
    """Run a recipe end to end and write report.json, report.md and each variant's weights."""
    from prunekit import distributed
    from prunekit.pipeline import run_recipe

    spec = _load(recipe, trust_code)
    if nproc > 1:
        if distributed.launched():
            fail("--nproc starts torchrun itself; drop it when launching with torchrun")
        verbose = logging.getLogger().isEnabledFor(logging.INFO)  # `prunekit -v run ...`
        command = [*(["-v"] * verbose), "run", str(recipe), "--out", str(out),
                   *(["--quiet"] * quiet), *(["--trust-code"] * trust_code)]
        argv = distributed.torchrun_argv(nproc, command)
        os.execv(argv[0], argv)
    distributed.init_from_env()
    writer = distributed.is_writer()
    who = "" if writer else f"rank {distributed.rank()}: "  # rank 0's lines are the run's own
    finished = False
    try:
        rows = run_recipe(spec, out, progress=not quiet, trust_code=trust_code)
        finished = True
    except distributed.WriterFailed:  # rank 0 has said why, once
        raise typer.Exit(code=2) from None
    except (ValueError, FileNotFoundError, distributed.RankMismatch) as exc:
        fail(who + str(exc))
    except OSError as exc:  # a full disk or a folder made read-only mid-run
        where = f" {exc.filename}" if exc.filename else ""
        fail(
            f"{who}cannot write{where}: {exc.strerror or exc}; free space or choose another "
            "--out (files already written are intact: rerun to resume)"
        )
    finally:
        distributed.shutdown(finished=finished)
    if writer:
        print_table(rows, spec.name)
        console.print(f"report: {out / 'report.md'}  ·  {out / 'report.json'}")
