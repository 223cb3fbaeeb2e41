"""The run store: every command records what it ran and what it measured, for the dashboard.

See :mod:`prunekit.runs.store` (the SQLite file and its queries), :mod:`prunekit.runs.record`
(the one-line API commands call) and :mod:`prunekit.runs.layers` (the per-layer data).
"""

from prunekit.runs.record import (
    RunRecorder,
    environment,
    fingerprint_of,
    record_run,
    recording,
)
from prunekit.runs.store import STORE_NAME, RunStore, StoreError, find_stores

__all__ = [
    "STORE_NAME",
    "RunRecorder",
    "RunStore",
    "StoreError",
    "environment",
    "find_stores",
    "fingerprint_of",
    "record_run",
    "recording",
]
