"""Sparse weights made real: compressed files, N:M sparsity, and kernels that skip the zeros.

- :mod:`~prunekit.sparse.storage` — bitmask / CSR weight files, checksummed, exact.
- :mod:`~prunekit.sparse.nm` — N:M semi-structured pruning and its validity check.
- :mod:`~prunekit.sparse.runtime` — :func:`deploy`: sparse kernels where they measure faster.
- :mod:`~prunekit.sparse.tuning` — the kernel's path and panel sizes, measured per machine.
- :mod:`~prunekit.sparse.semi_structured` — 2:4 on CUDA sparse tensor cores (optional).
"""

from prunekit.sparse.nm import GradualNM, is_nm_sparse, prune_nm
from prunekit.sparse.runtime import LayerDecision, decisions_table, deploy
from prunekit.sparse.semi_structured import SemiStructuredUnavailable, deploy_semi_structured
from prunekit.sparse.storage import StorageError, decode, encode, load_state_dict, save_state_dict
from prunekit.sparse.tuning import KernelTuning, kernel_tuning

__all__ = [
    "GradualNM",
    "KernelTuning",
    "LayerDecision",
    "SemiStructuredUnavailable",
    "StorageError",
    "decisions_table",
    "decode",
    "deploy",
    "deploy_semi_structured",
    "encode",
    "is_nm_sparse",
    "kernel_tuning",
    "load_state_dict",
    "prune_nm",
    "save_state_dict",
]
