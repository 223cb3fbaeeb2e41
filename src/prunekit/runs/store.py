"""The run store: one SQLite file beside a run's files, holding every run made into that folder.

Why SQLite: runs must be listed, compared and queried across directories by the dashboard and
by scripts (``sqlite3 runs/demo/runs.sqlite "select name, accuracy from rows"``), while a run is
still writing its progress; and a run killed at any instant must leave the store readable.
SQLite gives all of that from the standard library: each write below is one transaction (a
killed writer's half-done transaction is rolled back by the next reader), and in WAL mode
readers never block the writer. The store is the one file prunekit does not write through
:mod:`prunekit.io`: its transactions are its atomicity.

A run goes ``running`` → ``finished`` | ``failed`` | ``cancelled``. A run whose process died
without saying so (``kill -9``, a power cut) reads as ``interrupted``: its process id is gone.

>>> import tempfile
>>> store = RunStore(tempfile.mkdtemp())
>>> run_id = store.start_run("run", "t", {"recipe": {}}, "ab12", {"torch": "2.13"})
>>> store.finish_run(run_id, [{"name": "baseline", "accuracy": 0.9}])
>>> [(r["title"], r["status"], r["rows"]) for r in store.runs()]
[('t', 'finished', 1)]
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

STORE_NAME = "runs.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed", "cancelled")

Row = dict[str, Any]

_ROW_COLUMNS = ("accuracy", "loss", "latency_ms", "latency_p95_ms", "params", "nonzero_params",
                "sparsity", "macs", "file_bytes")
"""Row fields copied into columns of their own, so that SQL can filter and sort on them."""

LAYER_COLUMNS = ("kind", "params", "nonzero_params", "sparsity", "out_channels",
                 "original_out_channels", "in_channels", "original_in_channels", "macs",
                 "macs_share", "latency_ms", "latency_share")
"""What the store keeps per layer of a variant (:mod:`prunekit.runs.layers` measures them)."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL, command TEXT NOT NULL,
    fingerprint TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN {STATUSES}),
    started REAL NOT NULL, finished REAL, pid INTEGER, host TEXT, environment TEXT NOT NULL,
    error TEXT);
CREATE TABLE IF NOT EXISTS rows (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, position INTEGER NOT NULL,
    name TEXT NOT NULL, {", ".join(f"{c} NUMERIC" for c in _ROW_COLUMNS)}, data TEXT NOT NULL,
    PRIMARY KEY (run_id, position));
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, variant TEXT NOT NULL,
    position INTEGER NOT NULL, layer TEXT NOT NULL, kind TEXT,
    {", ".join(f"{c} NUMERIC" for c in LAYER_COLUMNS[1:])},
    PRIMARY KEY (run_id, variant, layer));
CREATE TABLE IF NOT EXISTS sensitivity (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, variant TEXT NOT NULL,
    target TEXT NOT NULL, granularity TEXT NOT NULL, amount REAL NOT NULL, metric TEXT NOT NULL,
    value REAL, PRIMARY KEY (run_id, variant, target, granularity, amount, metric));
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    time REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
"""


class StoreError(RuntimeError):
    """A store that cannot be opened or read; the message says which file and what to do."""


def _plain(value: Any) -> Any:
    """JSON-ready: NaN and infinities (not measured) become null, tuples lists, numpy scalars
    Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), allow_nan=False, separators=(",", ":"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunStore:
    """The store of one run directory (``directory/runs.sqlite``), created on first write.

    Every method opens its own short connection, so one store may be used from several threads
    and processes at once (the dashboard reads while a run writes).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_NAME
        self._schema_ready = False

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.is_file():
            raise StoreError(f"{self.path}: no run store here; run a prunekit command with "
                             f"--out {self.directory} first")
        if write:
            self.directory.mkdir(parents=True, exist_ok=True)
        try:
            with closing(sqlite3.connect(self.path, timeout=30.0)) as conn:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: consistent after a crash
                if write and not self._schema_ready:
                    conn.execute("PRAGMA journal_mode = WAL")  # readers never block the run
                    conn.executescript(_SCHEMA)
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                    conn.commit()
                    self._schema_ready = True
                self._check_version(conn)
                yield conn
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a readable run store ({exc}); move it aside "
                             "and the next run starts a new one") from None

    def _check_version(self, conn: sqlite3.Connection) -> None:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None or int(found[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer prunekit (schema "
                             f"{found[0] if found else '?'}); upgrade prunekit to read it")

    # --- writing ---------------------------------------------------------------------------

    def start_run(
        self, kind: str, title: str, command: Any, fingerprint: str,
        environment: Mapping[str, Any],
    ) -> str:
        """Record a new run as ``running``; return its id."""
        run_id = uuid.uuid4().hex
        with self._connect(write=True) as conn, conn:
            conn.execute(
                "INSERT INTO runs (id, kind, title, command, fingerprint, status, started, pid, "
                "host, environment) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, kind, title, _dumps(command), fingerprint, time.time(), os.getpid(),
                 socket.gethostname(), _dumps(environment)),
            )
        return run_id

    def add_event(self, run_id: str, kind: str, data: Mapping[str, Any]) -> None:
        """Append one progress event (a stage began, an epoch ended, …) to a run."""
        with self._connect(write=True) as conn, conn:
            conn.execute(
                "INSERT INTO events SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM events "
                "WHERE run_id = ?", (run_id, time.time(), kind, _dumps(data), run_id),
            )

    def finish_run(
        self,
        run_id: str,
        rows: Sequence[Row],
        *,
        layers: Mapping[str, Sequence[Row]] | None = None,
        sensitivity: Iterable[Row] = (),
    ) -> None:
        """Write a run's results and mark it finished, all in one transaction.

        ``layers`` maps a variant's name to its per-layer rows (keys of :data:`LAYER_COLUMNS`
        plus ``layer``); ``sensitivity`` rows have ``variant``, ``target``, ``granularity``
        (``"structured"``/``"unstructured"``), ``amount``, ``metric`` and ``value``.
        """
        with self._connect(write=True) as conn, conn:
            self._write_results(conn, run_id, rows, layers or {}, sensitivity)
            conn.execute("UPDATE runs SET status = 'finished', finished = ? WHERE id = ?",
                         (time.time(), run_id))

    def add_sensitivity(self, run_id: str, sensitivity: Iterable[Row]) -> None:
        """Add (or replace) sensitivity measurements of a finished run."""
        with self._connect(write=True) as conn, conn:
            self._write_results(conn, run_id, (), {}, sensitivity)

    def fail_run(self, run_id: str, error: str, *, cancelled: bool = False) -> None:
        """Mark a run failed (or cancelled), keeping what it recorded so far."""
        with self._connect(write=True) as conn, conn:
            conn.execute("UPDATE runs SET status = ?, finished = ?, error = ? WHERE id = ?",
                         ("cancelled" if cancelled else "failed", time.time(), error, run_id))

    @staticmethod
    def _write_results(
        conn: sqlite3.Connection, run_id: str, rows: Sequence[Row],
        layers: Mapping[str, Sequence[Row]], sensitivity: Iterable[Row],
    ) -> None:
        for position, row in enumerate(rows):
            values = [_plain(row.get(c)) for c in _ROW_COLUMNS]
            conn.execute(
                f"INSERT OR REPLACE INTO rows VALUES (?, ?, ?, {', '.join('?' * len(values))}, ?)",
                (run_id, position, str(row["name"]), *values, _dumps(row)),
            )
        for variant, layer_rows in layers.items():
            for position, layer in enumerate(layer_rows):
                conn.execute(
                    f"INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?, "
                    f"{', '.join('?' * len(LAYER_COLUMNS))})",
                    (run_id, variant, position, layer["layer"],
                     *(_plain(layer.get(c)) for c in LAYER_COLUMNS)),
                )
        for point in sensitivity:
            conn.execute(
                "INSERT OR REPLACE INTO sensitivity VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, point["variant"], str(point["target"]), point["granularity"],
                 float(point["amount"]), point["metric"], _plain(point["value"])),
            )

    # --- reading ---------------------------------------------------------------------------

    def _status(self, record: sqlite3.Row) -> str:
        if record["status"] != "running" or record["host"] != socket.gethostname():
            return str(record["status"])
        return "running" if _pid_alive(int(record["pid"])) else "interrupted"

    def runs(self) -> list[Row]:
        """A summary of every run in this store, newest first."""
        with self._connect(write=False) as conn:
            records = conn.execute(
                "SELECT runs.*, COUNT(rows.position) AS n_rows, MAX(rows.accuracy) AS best "
                "FROM runs LEFT JOIN rows ON rows.run_id = runs.id GROUP BY runs.id "
                "ORDER BY started DESC").fetchall()
        return [{
            "id": r["id"], "kind": r["kind"], "title": r["title"], "status": self._status(r),
            "fingerprint": r["fingerprint"], "started": r["started"], "finished": r["finished"],
            "rows": r["n_rows"], "best_accuracy": r["best"], "error": r["error"],
            "directory": str(self.directory),
        } for r in records]

    def run(self, run_id: str) -> Row:
        """Everything recorded about one run: command, environment, rows, layers, sensitivity."""
        with self._connect(write=False) as conn:
            record = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if record is None:
                raise StoreError(f"{self.path}: no run {run_id!r}; list the runs to see their ids")
            rows = conn.execute("SELECT data FROM rows WHERE run_id = ? ORDER BY position",
                                (run_id,)).fetchall()
            layers = conn.execute("SELECT * FROM layers WHERE run_id = ? ORDER BY variant, "
                                  "position", (run_id,)).fetchall()
            points = conn.execute("SELECT * FROM sensitivity WHERE run_id = ? ORDER BY variant, "
                                  "target, granularity, amount", (run_id,)).fetchall()
        by_variant: dict[str, list[Row]] = {}
        for layer in layers:
            by_variant.setdefault(layer["variant"], []).append(
                {"layer": layer["layer"], **{c: layer[c] for c in LAYER_COLUMNS}})
        return {
            "id": record["id"], "kind": record["kind"], "title": record["title"],
            "status": self._status(record), "fingerprint": record["fingerprint"],
            "started": record["started"], "finished": record["finished"],
            "error": record["error"], "directory": str(self.directory),
            "command": json.loads(record["command"]),
            "environment": json.loads(record["environment"]),
            "rows": [json.loads(r["data"]) for r in rows],
            "layers": by_variant,
            "sensitivity": [{k: p[k] for k in ("variant", "target", "granularity", "amount",
                                                "metric", "value")} for p in points],
        }

    def events(self, run_id: str, after: int = 0) -> list[Row]:
        """A run's progress events with a sequence number above ``after``, oldest first."""
        with self._connect(write=False) as conn:
            records = conn.execute(
                "SELECT seq, time, kind, data FROM events WHERE run_id = ? AND seq > ? "
                "ORDER BY seq", (run_id, after)).fetchall()
        return [{**json.loads(r["data"]), "seq": r["seq"], "time": r["time"],
                 "event": r["kind"]} for r in records]


def find_stores(roots: Iterable[str | os.PathLike[str]], *, max_depth: int = 4) -> list[RunStore]:
    """Every run store at or below ``roots`` (at most ``max_depth`` folders down), in path order.

    Symbolic links to folders are not followed, so a link cannot pull a store from elsewhere.
    """
    found: list[RunStore] = []
    for root in roots:
        base = Path(root)
        for directory, subdirs, files in os.walk(base, followlinks=False):
            depth = len(Path(directory).relative_to(base).parts)
            if depth >= max_depth:
                subdirs.clear()
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            if STORE_NAME in files and not Path(directory, STORE_NAME).is_symlink():
                found.append(RunStore(directory))
    return found
