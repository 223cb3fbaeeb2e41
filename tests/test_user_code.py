"""Code named by a string is imported only with trust_code, and fails in one line when broken."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prunekit.user_code import (
    UntrustedCodeError,
    UserCodeError,
    import_object,
    require_trust,
    source_digest,
)


def test_a_file_can_import_the_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "helpers_for_prunekit_test.py").write_text("WIDTH = 7\n")
    (tmp_path / "net.py").write_text(
        "from helpers_for_prunekit_test import WIDTH\ndef make():\n    return WIDTH\n"
    )
    assert import_object(f"{tmp_path / 'net.py'}:make", trust_code=True, what="model")() == 7
    assert str(tmp_path) not in __import__("sys").path  # the folder was on sys.path only meanwhile


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def make(:\n    pass\n", r"net\.py, line 1: .*fix the syntax"),
        ("raise RuntimeError('no GPU here')\n", "raised RuntimeError: no GPU here"),
        ("import no_such_module_for_prunekit\n", "cannot import"),
        ("x = 1\n", "has no attribute named 'make'"),
    ],
)
def test_broken_code_is_one_line(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "net.py").write_text(source)
    with pytest.raises(UserCodeError, match=message) as err:
        import_object(f"{tmp_path / 'net.py'}:make", trust_code=True, what="model")
    assert "\n" not in str(err.value)


def test_the_gate_refuses_before_the_file_is_even_looked_at() -> None:
    with pytest.raises(UntrustedCodeError, match="file '/no/such.py'"):
        import_object("/no/such.py:make", trust_code=False, what="loss")
    require_trust("cross_entropy", trust_code=False, what="loss")  # a registry name needs nothing


def test_the_source_digest_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text("def make():\n    return 1\n")
    digest = source_digest(f"{path}:make", trust_code=False)  # read, not imported
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source_digest("lenet5", trust_code=False) is None
    json_source = Path(__import__("json").__file__).read_bytes()
    assert source_digest("json:loads", trust_code=True) == hashlib.sha256(json_source).hexdigest()
    with pytest.raises(UntrustedCodeError):
        source_digest("json:loads", trust_code=False)  # a module must be imported to be found
