"""The run directories a dashboard serves: their stores, their runs, their loaded variants.

Stores are found again on every listing (a run launched a second ago appears at once), and a
variant loaded for a what-if is kept (a few, least recently used out first), so moving a slider
re-prunes a model already in memory rather than reading it from disk each time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from prunekit.dashboard.subject import Subject, load_subject
from prunekit.runs.store import RunStore, StoreError, find_stores

REPORT_FILES = ("report.html", "report.md", "report.json", "report.csv")
KEPT_SUBJECTS = 4


class Workspace:
    """Runs below ``roots`` (each an existing directory)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self._where: dict[str, tuple[int, RunStore]] = {}
        self._subjects: OrderedDict[tuple[str, str], Subject] = OrderedDict()
        self._lock = threading.Lock()

    def _located(self, index: int, store: RunStore, run: dict[str, Any]) -> dict[str, Any]:
        relative = Path(store.directory).resolve().relative_to(self.roots[index])
        prefix = "" if str(relative) == "." else f"{relative.as_posix()}/"
        files = [f"{prefix}{name}" for name in REPORT_FILES if (store.directory / name).is_file()]
        return {**run, "root": index, "relative": relative.as_posix(), "files": files}

    def runs(self) -> list[dict[str, Any]]:
        """Every run of every store, newest first; unreadable stores are listed as errors."""
        found, problems = [], []
        for index, root in enumerate(self.roots):
            for store in find_stores([root]):
                try:
                    runs = store.runs()
                except StoreError as exc:
                    problems.append(str(exc))
                    continue
                for run in runs:
                    self._where[run["id"]] = (index, store)
                    found.append(self._located(index, store, run))
        found.sort(key=lambda r: -r["started"])
        return found + [{"error": p} for p in problems]

    def _find(self, run_id: str) -> tuple[int, RunStore]:
        if run_id not in self._where:
            self.runs()  # a run started since the last listing
        if run_id not in self._where:
            raise KeyError(run_id)
        return self._where[run_id]

    def run(self, run_id: str) -> dict[str, Any]:
        """Everything recorded about one run, with its root index, folder and report files."""
        index, store = self._find(run_id)
        return self._located(index, store, store.run(run_id))

    def events(self, run_id: str, after: int) -> list[dict[str, Any]]:
        """The run's progress events after sequence number ``after``."""
        return self.store_of(run_id).events(run_id, after)

    def store_of(self, run_id: str) -> RunStore:
        """The store that holds ``run_id``."""
        return self._find(run_id)[1]

    def subject(self, run_id: str, variant: str) -> Subject:
        """The variant loaded for what-ifs (kept for the next request)."""
        key = (run_id, variant)
        with self._lock:
            if key in self._subjects:
                self._subjects.move_to_end(key)
                return self._subjects[key]
        subject = load_subject(self.run(run_id), variant, self.roots)
        with self._lock:
            self._subjects[key] = subject
            while len(self._subjects) > KEPT_SUBJECTS:
                self._subjects.popitem(last=False)
        return subject
