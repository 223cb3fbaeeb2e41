"""Sparse weights made real: compressed files, N:M sparsity, and kernels that skip the zeros.

- :mod:`~prunekit.sparse.storage` — bitmask / CSR weight files, checksummed, exact.
- :mod:`~prunekit.sparse.nm` — N:M semi-structured pruning and its validity check.
- :mod:`~prunekit.sparse.runtime` — :func:`deploy`: sparse kernels where they measure faster.
"""

from prunekit.sparse.nm import GradualNM, is_nm_sparse, prune_nm
from prunekit.sparse.runtime import LayerDecision, decisions_table, deploy
from prunekit.sparse.storage import StorageError, decode, encode, load_state_dict, save_state_dict

__all__ = [
    "GradualNM",
    "LayerDecision",
    "StorageError",
    "decisions_table",
    "decode",
    "deploy",
    "encode",
    "is_nm_sparse",
    "load_state_dict",
    "prune_nm",
    "save_state_dict",
]
