"""Atomic file writes: a crash mid-write never leaves half a checkpoint, model or report.

Every file prunekit writes goes through :func:`atomic_write`, which writes to a temporary file in
the destination's own directory (so the final ``os.replace`` is a same-filesystem rename, atomic
on POSIX and Windows) and only then moves it into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left as it was.

    >>> with atomic_write("/tmp/prunekit-example.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
