"""Shared fixtures: small, seeded, fast, and never writing into the user's own folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The kernel's tuning cache (and any other prunekit cache) goes to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path_factory.mktemp("prunekit-cache")))
        yield
