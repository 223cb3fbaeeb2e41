"""Python code named by a string — ``path/to/file.py:name`` or ``package.module:name`` — and the
explicit opt-in that importing it needs.

Why: a recipe or a command line that names ``os:system`` or ``evil.py:make`` makes prunekit
*run* that code the moment it imports it, exactly as Hugging Face's ``trust_remote_code`` does.
A recipe can come from a colleague, a repository or a paper, so importing is refused unless the
caller says ``trust_code=True`` (``--trust-code`` on the command line), and the refusal happens
before anything is imported. Every place that resolves such a string — model factories, task
losses, anything later — goes through :func:`import_object`, so the gate is the same everywhere.

>>> names_code("lenet5"), names_code("nets/mine.py:make"), names_code("torch.nn:Identity")
(False, True, True)
>>> import_object("torch.nn:Identity", trust_code=False, what="model")
Traceback (most recent call last):
...
prunekit.user_code.UntrustedCodeError: model 'torch.nn:Identity' names Python code (module 'torch.nn'), and importing it runs that code; if you trust it, pass --trust-code (trust_code=True in Python)
>>> import_object("torch.nn:Identity", trust_code=True, what="model").__name__
'Identity'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


class UntrustedCodeError(ValueError):
    """A string names code to import and the caller has not opted in with ``trust_code``."""


class UserCodeError(ValueError):
    """Trusted code could not be imported: a missing file, a syntax error, an import that raised."""


_MISSING = object()


def names_code(spec: str) -> bool:
    """True when ``spec`` is ``location:name`` (a file or module to import), not a registry name."""
    return ":" in spec


def _split(spec: str, what: str) -> tuple[str, str]:
    location, _, attr = spec.rpartition(":")
    if not location or not attr.isidentifier():
        raise UserCodeError(
            f"{what} {spec!r}: write code as 'path/to/file.py:name' or 'package.module:name'"
        )
    return location, attr


def describe_location(spec: str) -> str:
    """What importing ``spec`` would run, for messages: ``file 'x.py'`` or ``module 'a.b'``."""
    location = spec.rpartition(":")[0]
    return f"file {location!r}" if location.endswith(".py") else f"module {location!r}"


def require_trust(spec: str, *, trust_code: bool, what: str) -> None:
    """Refuse, before importing anything, to resolve code the caller has not trusted.

    >>> require_trust("x.py:make", trust_code=True, what="model")
    """
    if names_code(spec) and not trust_code:
        raise UntrustedCodeError(
            f"{what} {spec!r} names Python code ({describe_location(spec)}), and importing it "
            "runs that code; if you trust it, pass --trust-code (trust_code=True in Python)"
        )


def check_exists(spec: str, what: str) -> None:
    """For ``file.py:name``: the file must exist (checked without importing it)."""
    location, _ = _split(spec, what)
    if location.endswith(".py") and not Path(location).is_file():
        raise UserCodeError(f"{what} file {location!r} does not exist; check the path")


def import_object(spec: str, *, trust_code: bool, what: str) -> Any:
    """The object ``spec`` names, imported only if ``trust_code`` (else UntrustedCodeError).

    A file is imported with its own folder on ``sys.path`` for the duration, so it can import
    the modules beside it. What goes wrong while importing — a missing file, a syntax error, an
    exception at import time, no such name — is one :class:`UserCodeError` line.
    """
    require_trust(spec, trust_code=trust_code, what=what)
    location, attr = _split(spec, what)
    check_exists(spec, what)
    try:
        module = _import_file(Path(location)) if location.endswith(".py") else (
            importlib.import_module(location)
        )  # fmt: skip
    except SyntaxError as err:
        raise UserCodeError(
            f"{what} {spec!r}: {err.filename}, line {err.lineno}: {err.msg}; fix the syntax there"
        ) from err
    except ImportError as err:
        raise UserCodeError(f"{what} {spec!r}: cannot import {location!r} ({err})") from err
    except Exception as err:  # the user's module raised while being imported
        raise UserCodeError(
            f"{what} {spec!r}: importing {location!r} raised {type(err).__name__}: {err}"
        ) from err
    value = getattr(module, attr, _MISSING)
    if value is _MISSING:
        raise UserCodeError(f"{what} {spec!r}: {location!r} has no attribute named {attr!r}")
    return value


def source_digest(spec: str, *, trust_code: bool) -> str | None:
    """SHA-256 of the source ``spec`` comes from (None for registry names, or for a module
    without a source file): fingerprints change when the user's code does.

    A file is read, not imported; a module is imported (once: Python caches it) to find its file,
    so it needs ``trust_code`` like any import.
    """
    if not names_code(spec):
        return None
    location, _ = _split(spec, "code")
    if location.endswith(".py"):
        path: str | None = location
    else:
        import_object(spec, trust_code=trust_code, what="code")
        path = getattr(sys.modules.get(location), "__file__", None)
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _import_file(path: Path) -> Any:
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"prunekit_user_{path.stem}_{where}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{str(path)!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(folder)
    return module
