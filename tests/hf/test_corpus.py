"""The pinned corpus: disjoint splits, checked file, deterministic windows."""

from __future__ import annotations

import pytest
import torch

from prunekit.hf import corpus


def test_splits_are_disjoint_and_pinned():
    calibration = corpus.corpus_documents("calibration")
    evaluation = corpus.corpus_documents("evaluation")
    assert (len(calibration), len(evaluation)) == (200, 100)
    assert not set(calibration) & set(evaluation)
    assert sum(len(d.split()) for d in evaluation) > 15_000  # enough prose to evaluate on


def test_a_different_file_fails_loudly(tmp_path, monkeypatch):
    fake = tmp_path / "lee_background.cor"
    fake.write_text("not the corpus\n" * 300)
    monkeypatch.setattr(corpus, "corpus_path", lambda: fake)
    with pytest.raises(corpus.CorpusError, match="pinned"):
        corpus.corpus_documents("evaluation")


def test_windows_are_seeded_and_evaluation_is_contiguous():
    ids = torch.arange(1000)
    a = corpus.calibration_windows(ids, 4, 32, seed=3)
    assert torch.equal(a, corpus.calibration_windows(ids, 4, 32, seed=3))
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # each window is a run of the text
    windows = corpus.evaluation_windows(ids, 100, tokens=450)
    assert windows.shape == (4, 100) and torch.equal(windows.flatten(), ids[:400])
    with pytest.raises(ValueError, match="seq-len"):
        corpus.calibration_windows(ids[:10], 2, 32)


def test_user_text_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpus.read_text_file(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="UTF-8"):
        corpus.read_text_file(tmp_path / "bin.txt")
