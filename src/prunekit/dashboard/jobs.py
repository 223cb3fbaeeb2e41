"""Recipes launched from the page: each is ``prunekit run`` in a child process, watched through
the run store it writes, and cancelled with the same signal as Ctrl-C.

A child process (not a thread) because a run holds the CPU for minutes and must be stoppable
at any instant without leaving the dashboard in an unknown state; SIGINT makes the run mark
itself ``cancelled`` in its store, and a run that ignores it for :data:`CANCEL_GRACE_SECONDS`
is killed (and then reads as ``interrupted``).

The dashboard never runs code it finds: it launches recipes whose model is a zoo name only,
and never passes ``--trust-code`` (the opt-in that imports a recipe's ``file.py:factory``);
data files and baseline weights must lie inside the run directories it serves.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prunekit.io import write_text_atomic
from prunekit.runs.store import RunStore, StoreError

CANCEL_GRACE_SECONDS = 15.0
MAX_RECIPE_BYTES = 256 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LaunchError(ValueError):
    """A launch refused before anything started; one line saying why and what to change."""


@dataclass
class Job:
    """One launched run."""

    id: str
    name: str
    out_dir: Path
    process: subprocess.Popen
    started: float
    cancelled: bool = False
    output: list[str] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        """What the page shows: status, the run's id in its store, the last output lines."""
        code = self.process.poll()
        status = ("running" if code is None else "cancelled" if self.cancelled
                  else "finished" if code == 0 else "failed")
        return {"id": self.id, "name": self.name, "status": status, "exit_code": code,
                "run_id": self.run_id(), "started": self.started,
                "directory": str(self.out_dir), "output": self.output[-12:]}

    def run_id(self) -> str | None:
        """The id of the run this process recorded in its store (None until it starts)."""
        try:
            runs = RunStore(self.out_dir).runs()
        except StoreError:
            return None
        return next((r["id"] for r in runs if r["started"] >= self.started - 1), None)


def _check_paths(recipe: Any, roots: list[Path]) -> None:
    spec = recipe.model_dump(mode="json")
    for field_name, value in (("data.path", spec["data"].get("path")),
                              ("baseline.load", spec["baseline"].get("load"))):
        if value and not any(Path(value).resolve().is_relative_to(r.resolve()) for r in roots):
            raise LaunchError(f"{field_name} {value!r} lies outside the run directories; the "
                              "dashboard reads only inside them (move the file there)")


def parse_launch(text: str, roots: list[Path]) -> Any:
    """The recipe in ``text``, validated and checked for what the dashboard may not run."""
    from prunekit.recipe import RecipeError, UntrustedRecipeError, parse_recipe

    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise LaunchError(f"the recipe is over {MAX_RECIPE_BYTES // 1024} KB; a recipe is a "
                          "page of YAML")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise LaunchError(f"the recipe is not valid YAML{where}; fix the syntax there") from None
    try:
        recipe = parse_recipe(data, "recipe")
    except UntrustedRecipeError as exc:
        cause = str(exc).partition(", and importing it runs that code")[0]
        raise LaunchError(f"{cause}; the dashboard runs zoo models and built-in losses only (it "
                          "never trusts code): run it yourself with `prunekit run --trust-code` "
                          "if you trust it") from None
    except RecipeError as exc:
        raise LaunchError(str(exc)) from None
    _check_paths(recipe, roots)
    return recipe


class Jobs:
    """The runs launched by this dashboard."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def launch(self, text: str, name: str, root: int = 0) -> Job:
        """Validate ``text`` and start ``prunekit run`` on it into ``roots[root]/name``."""
        if not NAME.match(name or ""):
            raise LaunchError(f"run name {name!r}: use letters, digits, '_', '-' and '.', "
                              "starting with a letter or digit")
        if not 0 <= root < len(self.roots):
            raise LaunchError(f"no run directory number {root}")
        parse_launch(text, self.roots)
        out = self.roots[root] / name
        if out.exists():
            raise LaunchError(f"{out} exists already; pick another run name")
        write_text_atomic(out / "launched.yaml", text)
        process = subprocess.Popen(
            [sys.executable, "-m", "prunekit.dashboard.launched", str(out / "launched.yaml"),
             "--out", str(out), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True,
        )
        job = Job(uuid.uuid4().hex[:12], name, out, process, time.time())
        threading.Thread(target=self._collect, args=(job,), daemon=True).start()
        with self._lock:
            self._jobs[job.id] = job
        return job

    @staticmethod
    def _collect(job: Job) -> None:
        assert job.process.stdout is not None
        for line in job.process.stdout:
            job.output.append(line.rstrip())

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def states(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [job.state() for job in sorted(jobs, key=lambda j: -j.started)]

    def cancel(self, job_id: str) -> Job:
        """Interrupt a job as Ctrl-C would; kill it if it has not stopped after the grace."""
        job = self.get(job_id)
        if job.process.poll() is None:
            job.cancelled = True
            job.process.send_signal(signal.SIGINT)
            threading.Thread(target=self._reap, args=(job,), daemon=True).start()
        return job

    @staticmethod
    def _reap(job: Job) -> None:
        try:
            job.process.wait(timeout=CANCEL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()

    def shutdown(self) -> None:
        """Cancel every running job and wait for them (the dashboard is stopping)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.process.poll() is None:
                self.cancel(job.id)
        for job in jobs:
            self._reap(job)

