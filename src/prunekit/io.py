"""Atomic file writes: a crash mid-write never leaves half a checkpoint, model or report.

Every file prunekit writes goes through :func:`atomic_write`, which writes to a temporary file in
the destination's own directory (so the final ``os.replace`` is a same-filesystem rename, atomic
on POSIX and Windows) and only then moves it into place. A failed write — an exception, a full
disk, a read-only folder — removes its temporary file and leaves the old file as it was.

Temporary files are created with mode ``0o666`` filtered by the user's umask, as ``open`` would
(``tempfile.mkstemp`` makes them ``0o600``, which then stuck to every report and model), and are
named ``.<target>.<pid>.<random>.tmp``: a run killed mid-write leaves one behind, and
:func:`remove_stray_temporaries` recognises it by its writer's process id being gone.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_text_atomic(folder / "a.txt", "hello")
>>> (folder / "a.txt").read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def _new_temporary(target: Path) -> Path:
    """An empty new file beside ``target``, created with the umask's permissions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write_set(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path per target; on success all replace their targets together.

    Nothing is replaced until every file of the set has been written and synced, so a failure
    while writing any of them (an exception, a full disk) leaves every target as it was. The
    renames that follow are each atomic and take microseconds.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_write_set([folder / "a.md", folder / "a.csv"]) as (md, csv):
    ...     _ = md.write_text("# a"), csv.write_text("a,b")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.csv', 'a.md']
    """
    targets = [Path(p) for p in paths]
    temporaries: list[Path] = []
    try:
        for target in targets:
            temporaries.append(_new_temporary(target))
        yield temporaries
        for tmp in temporaries:
            _fsync(tmp)
        for tmp, target in zip(temporaries, targets):
            os.replace(tmp, target)
        for directory in {target.parent for target in targets}:
            _fsync_directory(directory)
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left as it was.

    >>> with atomic_write("/tmp/prunekit-example.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    """
    with atomic_write_set([path]) as (tmp,):
        yield tmp


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_texts_atomic(texts: Mapping[str | os.PathLike[str], str]) -> None:
    """Write several text files as one set (see :func:`atomic_write_set`), UTF-8."""
    with atomic_write_set(list(texts)) as temporaries:
        for tmp, text in zip(temporaries, texts.values()):
            tmp.write_text(text, encoding="utf-8")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # Windows' os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a pid we cannot ask about): leave its files
    return True


def remove_stray_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left under ``directory``.

    Only files named the way :func:`atomic_write` names them, whose writing process no longer
    exists, are removed: a concurrent run's files in flight are left alone. Returns the removed
    paths.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".model.safetensors.999999999.0123abcd.tmp").write_bytes(b"half")
    >>> [p.name for p in remove_stray_temporaries(folder)]
    ['.model.safetensors.999999999.0123abcd.tmp']
    """
    removed = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    for candidate in sorted(root.rglob(".*.tmp")):
        match = _TEMP_NAME.fullmatch(candidate.name)
        if match is None or not candidate.is_file() or _process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed
