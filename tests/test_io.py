from pathlib import Path

import pytest

from prunekit.io import atomic_write, write_text_atomic


def test_atomic_write_replaces_target(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_files_get_the_users_umask_not_0600(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.md", "x")
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.md").stat().st_mode & 0o777 == 0o600


def test_a_set_is_replaced_only_when_every_file_was_written(tmp_path: Path) -> None:
    from prunekit.io import atomic_write_set, write_texts_atomic

    write_texts_atomic({tmp_path / "a": "old a", tmp_path / "b": "old b"})
    targets = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(OSError, match="No space"), atomic_write_set(targets) as (a, _):
        a.write_text("new a")
        raise OSError(28, "No space left on device")
    assert (tmp_path / "a").read_text() == "old a" and (tmp_path / "b").read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_stray_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from prunekit.io import remove_stray_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "v").mkdir()
    stray = tmp_path / "v" / f".model.safetensors.{dead_pid}.0123abcd.tmp"
    live = tmp_path / f".report.md.{os.getpid()}.0123abcd.tmp"
    foreign = tmp_path / ".notes.tmp"  # not ours: left alone
    for path in (stray, live, foreign):
        path.write_text("partial")
    assert remove_stray_temporaries(tmp_path) == [stray]
    assert not stray.exists() and live.exists() and foreign.exists()
