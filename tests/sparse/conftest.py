"""The sparse tests keep the kernel's tuning cache in a temporary folder, not the user's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _tuning_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path_factory.mktemp("prunekit-cache")))
        yield
