"""Run generated cases against the prunekit that is imported, and classify what happened.

Outcomes, per case:

- ``refused``: a clean refusal — exit code 2 and one line (recipes), or a ``ValueError`` whose
  message is one line (model files: ``StorageError``, ``ArchitectureError``);
- ``accepted``: accepted where acceptance is right (a valid recipe; a file that loads to exactly
  the saved model, or an attacker's file that loads as an ordinary allowlisted model);
- ``traceback``: any other exception, or a refusal that is not one line of text;
- ``hang``: still running after :data:`HANG_SECONDS`;
- ``code_executed``: the case's canary file exists afterwards;
- ``wrongly_accepted``: accepted where it must be refused (a tampered file that loads as
  something else than what was saved, a recipe that should fail);
- ``unclear``: refused in one line that does not name the field the case broke.

Used by the fuzz tests (in-process) and by ``benchmarks/fuzz.py`` (which counts old code too).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model_cases import ModelCase
from .recipe_cases import RecipeCase

HANG_SECONDS = 30
STATUSES = ("refused", "accepted", "unclear", "traceback", "hang", "code_executed",
            "wrongly_accepted")  # fmt: skip
FAILURES = ("traceback", "hang", "code_executed", "wrongly_accepted")


@dataclass(frozen=True)
class Outcome:
    case: str
    category: str
    status: str
    seconds: float
    detail: str = ""


class Hang(BaseException):  # a BaseException: CliRunner must not swallow it
    """Raised by :func:`alarm` when a case runs past its time."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Interrupt the body with :class:`Hang` after ``seconds`` (main thread, POSIX)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fill(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder)).replace("{canary}", str(folder / "canary"))


def run_recipe_case(
    case: RecipeCase, folder: Path, invoke: Callable[[list[str]], Any], trust_flag: bool
) -> Outcome:
    """Write the case into ``folder`` and run ``prunekit <command>`` on it via ``invoke``
    (typer's ``CliRunner.invoke`` bound to the app)."""
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        (folder / name).write_text(_fill(content, folder))
    recipe = folder / "recipe.yaml"
    recipe.write_bytes(case.text.replace(b"{dir}", str(folder).encode()).replace(
        b"{canary}", str(folder / "canary").encode()))  # fmt: skip
    command, *options = [_fill(part, folder) for part in case.command]
    args = [
        command,
        str(recipe),
        *options,
        *(["--trust-code"] if case.trusted and trust_flag else []),
    ]
    started = time.perf_counter()
    try:
        with alarm(HANG_SECONDS):
            result = invoke(args)
    except Hang:
        return Outcome(case.name, case.category, "hang", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    lines = [line for line in result.output.splitlines() if line.strip()]
    status = _recipe_status(case, result, lines, folder)
    return Outcome(case.name, case.category, status, seconds, (lines or [""])[-1][:300])


def _recipe_status(case: RecipeCase, result: Any, lines: list[str], folder: Path) -> str:
    if (folder / "canary").exists():
        return "code_executed"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "traceback"
    if result.exit_code == 0:
        return "wrongly_accepted" if case.expect == "reject" else "accepted"
    if result.exit_code != 2 or len(lines) != 1 or "Traceback" in result.output:
        return "traceback" if "Traceback" in result.output else "unclear"
    if case.field is not None and case.field not in lines[0]:
        return "unclear"
    return "refused"


@dataclass(frozen=True)
class Reference:
    """What the original file loads to: the outcome a tampered file may only match."""

    example: torch.Tensor
    output: torch.Tensor
    state: dict[str, torch.Tensor]
    code: str


def reference(load: Callable[[Path], Any], path: Path, example: torch.Tensor) -> Reference:
    model = load(path)
    with torch.no_grad():
        output = model(example)
    return Reference(example, output, dict(model.state_dict()), str(model.code))


def _identical(model: Any, ref: Reference) -> bool:
    """Whether ``model`` is the saved model; runs it first, as ``prunekit run`` would, so code a
    file smuggled into its forward gets its chance to run (and write the canary)."""
    with torch.no_grad():
        output = model(ref.example)
    state = model.state_dict()
    if set(state) != set(ref.state) or str(getattr(model, "code", "")) != ref.code:
        return False
    return all(torch.equal(state[k], ref.state[k]) for k in state) and torch.equal(
        output, ref.output
    )


def run_model_case(
    case: ModelCase, path: Path, canary: Path, load: Callable[[Path], Any], ref: Reference
) -> Outcome:
    """Load ``case``'s file (written to ``path``); if it loads, run it and compare."""
    canary.unlink(missing_ok=True)
    path.write_bytes(case.data)
    started = time.perf_counter()
    status, detail = "refused", ""
    try:
        with alarm(HANG_SECONDS):
            status, detail = _load_status(case, path, load, ref)
    except Hang:
        status = "hang"
    if canary.exists():
        status = "code_executed"
    return Outcome(case.name, case.category, status, time.perf_counter() - started, detail)


def _load_status(
    case: ModelCase, path: Path, load: Callable[[Path], Any], ref: Reference
) -> tuple[str, str]:
    try:
        model = load(path)
    except ValueError as err:  # StorageError and ArchitectureError are ValueErrors
        message = str(err)
        return ("refused" if message and "\n" not in message else "unclear"), message[:300]
    except Exception as err:  # noqa: BLE001  (the point: any other exception is a finding)
        return "traceback", f"{type(err).__name__}: {str(err)[:300]}"
    try:
        same = _identical(model, ref)
    except Exception as err:  # noqa: BLE001  (an accepted model whose forward fails)
        same, detail = False, f"forward: {type(err).__name__}"
    else:
        detail = "identical" if same else "loads as a different model"
    if same:
        return "accepted", detail
    return ("wrongly_accepted" if case.expect == "reject" else "accepted"), detail


def counts(outcomes: list[Outcome]) -> dict[str, Counter[str]]:
    """category → Counter of statuses (every status present, zero or not)."""
    table: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        table.setdefault(outcome.category, Counter({s: 0 for s in STATUSES}))[outcome.status] += 1
    return table


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status in FAILURES]
