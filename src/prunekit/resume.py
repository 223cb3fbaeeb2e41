"""What a rerun into the same output folder may reuse, and how it knows the reuse is honest.

Why: a run keeps its baseline checkpoint and every finished variant, so an interrupted recipe
resumes where it stopped. That is only correct if what is reused was produced by *exactly* what
the rerun asks for — the same recipe parts, the same data, seed and prunekit version, the same
user code. Reusing anything else reports an old model under new settings (a baseline trained at
one learning rate shown as the result of another). So every reused artefact is tied to a
fingerprint of everything that produced it:

- a finished row (``row.json``) records its fingerprint and the SHA-256 of each file it
  describes (the dense and compressed model, the ONNX export); a row whose fingerprint differs,
  that is not valid JSON, or whose files are missing, truncated or changed is recomputed, with a
  one-line notice saying why;
- a training checkpoint is named by its fingerprint (``checkpoint-<fingerprint>.pt``): one made
  for other settings is never resumed, and a damaged one is removed with a notice.

>>> fingerprint({"lr": 0.1}, 3) == fingerprint({"lr": 0.1}, 3) != fingerprint({"lr": 0.2}, 3)
True
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from prunekit.io import write_text_atomic

log = logging.getLogger(__name__)

Row = dict[str, Any]
ROW_FILE = "row.json"
ARTEFACTS = ("model.safetensors", "model.sparse.safetensors", "model.onnx")
"""The files a finished variant's row describes (those that exist when it is recorded)."""


def fingerprint(*parts: Any) -> str:
    """A short, stable digest of ``parts`` (pydantic models, JSON values, strings)."""
    text = json.dumps(
        [p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tensors_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes: the identity of a data set as trained on.

    >>> zeros, ones = tensors_digest(torch.zeros(2)), tensors_digest(torch.ones(2))
    >>> zeros == tensors_digest(torch.zeros(2)) != ones
    True
    """
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().contiguous().cpu()
        digest.update(f"{flat.dtype}{list(flat.shape)}".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_row(directory: Path, row: Row) -> Row:
    """Write ``row`` (which carries its ``fingerprint``) with the digests of its files."""
    present = [name for name in ARTEFACTS if (directory / name).is_file()]
    files = {name: file_digest(directory / name) for name in present}
    recorded = {**row, "artefacts": files}
    write_text_atomic(directory / ROW_FILE, json.dumps(recorded, indent=2, allow_nan=True) + "\n")
    return recorded


def finished_row(directory: Path, wanted: str, label: str) -> Row | None:
    """The row recorded in ``directory`` if it was produced by ``wanted`` and its files are
    intact; otherwise None, after a one-line notice of why it will be recomputed."""
    path = directory / ROW_FILE
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return _stale(path, f"{label}: {path} is not a readable result; recomputing")
    if not isinstance(row, dict) or not isinstance(row.get("artefacts"), dict):
        return _stale(path, f"{label}: {path} is not a finished result; recomputing")
    if row.get("fingerprint") != wanted:
        return _stale(
            path, f"{label}: its settings, data or code changed since {path}; recomputing"
        )
    for name, digest in row["artefacts"].items():
        file = directory / str(name)
        if not file.is_file() or file_digest(file) != digest:
            return _stale(
                path, f"{label}: {file} is missing or changed since it was measured; recomputing"
            )
    return row


def _stale(path: Path, notice: str) -> None:
    log.warning(notice)
    path.unlink(missing_ok=True)  # a result that no longer holds must not be found again


def checkpoint_for(directory: Path, wanted: str, label: str) -> Path:
    """The checkpoint path for training fingerprinted ``wanted``; others are removed.

    A checkpoint of other settings (another lr, seed, data...) is deleted with a notice instead
    of being resumed, as is one that cannot be read (a truncated file from a full disk).
    """
    path = directory / f"checkpoint-{wanted}.pt"
    for other in sorted(directory.glob("checkpoint*.pt")):
        if other != path:
            log.warning("%s: %s was trained with other settings; training afresh", label, other)
            other.unlink(missing_ok=True)
    if path.is_file() and not _readable_checkpoint(path):
        log.warning("%s: %s is damaged or truncated; training afresh", label, path)
        path.unlink(missing_ok=True)
    return path


def _readable_checkpoint(path: Path) -> bool:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (truncated, garbage, foreign: every way means "not usable")
        return False
    return isinstance(state, dict) and {"model", "optimizer", "next_epoch"} <= set(state)
