"""Recording a run in its store: one line for a command that has its results, a context for
one that wants its progress watched.

Every command calls one of these::

    record_run(out_dir, "prune", command, fingerprint, rows, layers=layers)

    with recording(out_dir, "run", command, fingerprint=fp, title=name) as run:
        run.event("stage", variant="l1", stage=0)
        fit(..., callbacks=[run.training("l1[0]", epochs=4, steps=252)])
        run.finish(rows, layers=layers)

A run that raises is marked ``failed`` with the error's one line, one interrupted with Ctrl-C
(or cancelled from the dashboard, which sends the same signal) ``cancelled``; both keep what
they recorded. The store is a record *beside* the run's own files: if it cannot be written
(a read-only folder, a full disk) the run goes on, with one warning, and its files are intact.

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> run_id = record_run(out, "prune", {"ratio": 0.5}, "f00d", [{"name": "before"}])
>>> from prunekit.runs.store import RunStore
>>> RunStore(out).run(run_id)["command"]
{'ratio': 0.5}
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunekit.runs.store import Row, RunStore, StoreError

log = logging.getLogger(__name__)

STEP_EVENT_SECONDS = 1.0
"""Training steps are reported at most this often (epochs always are)."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The vector extensions that decide which kernels a latency was measured on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]


def environment() -> dict[str, Any]:
    """What a measurement depends on: versions, threads and the CPU.

    >>> sorted(environment())[:4]
    ['cpu', 'cpu_count', 'cpu_flags', 'interop_threads']
    """
    import torch

    return {
        "prunekit": _version("prunekit"), "torch": torch.__version__,
        "numpy": _version("numpy"), "python": platform.python_version(),
        "platform": platform.platform(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def fingerprint_of(value: Any) -> str:
    """A short stable hash of a JSON-able description of what produced a run.

    >>> fingerprint_of({"b": 1, "a": 2}) == fingerprint_of({"a": 2, "b": 1})
    True
    """
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TrainingProgress:
    """A :func:`prunekit.train.fit` callback that writes epochs (with their loss) and, at most
    every :data:`STEP_EVENT_SECONDS`, the step reached, as events of a run."""

    def __init__(self, emit: Callable[..., None], description: str, epochs: int, steps: int):
        self._emit, self.description, self.epochs, self.steps = emit, description, epochs, steps
        self._last = 0.0

    def on_fit_start(self, model: Any, optimizer: Any) -> None:
        self._emit("train", description=self.description, epochs=self.epochs, steps=self.steps)

    def on_step_end(self, step: int, model: Any, optimizer: Any) -> None:
        now = time.monotonic()
        if now - self._last >= STEP_EVENT_SECONDS:
            self._last = now
            self._emit("step", description=self.description, step=step + 1, steps=self.steps)

    def on_epoch_summary(self, summary: Mapping[str, float]) -> None:
        self._emit("epoch", description=self.description, epoch=int(summary["epoch"]) + 1,
                   epochs=self.epochs, loss=summary["loss"])


class RunRecorder:
    """One run being recorded; made by :func:`recording`."""

    def __init__(self, store: RunStore, run_id: str | None) -> None:
        self.store, self.run_id = store, run_id
        self.finished = False

    def _safely(self, write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """``write(run_id, *args, **kwargs)`` unless the store failed before; a failure now
        is logged once and ends the recording, never the run."""
        if self.run_id is None:
            return
        try:
            write(self.run_id, *args, **kwargs)
        except (StoreError, sqlite3.Error, OSError) as exc:
            log.warning("run store %s: cannot record this run any more (%s); the run's own "
                        "files are unaffected", self.store.path, exc)
            self.run_id = None

    def event(self, kind: str, /, **data: Any) -> None:
        """Record a progress event (``stage``, ``train``, ``epoch``, ``step``, ``measure``…)."""
        self._safely(self.store.add_event, kind, data)

    def training(self, description: str, *, epochs: int, steps: int) -> TrainingProgress:
        """A ``fit`` callback reporting this training's epochs, loss and steps."""
        return TrainingProgress(self.event, description, epochs, steps)

    def finish(
        self, rows: Sequence[Row], *, layers: Mapping[str, Sequence[Row]] | None = None,
        sensitivity: Iterable[Row] = (),
    ) -> None:
        """Write the results and mark the run finished (one transaction)."""
        self._safely(self.store.finish_run, rows, layers=layers, sensitivity=sensitivity)
        self.finished = True


@contextlib.contextmanager
def recording(
    out_dir: str | os.PathLike[str], kind: str, command: Any, *, fingerprint: str, title: str,
) -> Iterator[RunRecorder]:
    """Record a run in ``out_dir``'s store while the body runs (see the module docstring)."""
    store = RunStore(out_dir)
    recorder = RunRecorder(store, None)
    try:
        recorder.run_id = store.start_run(kind, title, command, fingerprint, environment())
    except (StoreError, sqlite3.Error, OSError) as exc:
        log.warning("run store %s: cannot record this run (%s); its files are written as "
                    "usual", store.path, exc)
    try:
        yield recorder
    except KeyboardInterrupt:
        recorder._safely(store.fail_run, "cancelled", cancelled=True)
        raise
    except BaseException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        recorder._safely(store.fail_run, message)
        raise
    if not recorder.finished:
        recorder._safely(store.fail_run, "ended without results")


def record_run(
    out_dir: str | os.PathLike[str],
    kind: str,
    command: Any,
    fingerprint: str,
    rows: Sequence[Row],
    *,
    title: str | None = None,
    layers: Mapping[str, Sequence[Row]] | None = None,
    sensitivity: Iterable[Row] = (),
) -> str | None:
    """Record a finished run in ``out_dir``'s store in one call; return its id (None when the
    store could not be written, which is logged as a warning).

    ``kind`` names the command (``run``, ``prune``, ``oneshot``, ``shrink``, ``compress``,
    ``sensitivity``); ``command`` is what was asked for (a recipe, the options), as JSON.
    """
    with recording(out_dir, kind, command, fingerprint=fingerprint,
                   title=title or kind) as recorder:
        recorder.finish(rows, layers=layers, sensitivity=sensitivity)
    return recorder.run_id
