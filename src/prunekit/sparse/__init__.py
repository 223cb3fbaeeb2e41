"""Sparse weights made real: compressed files, N:M sparsity, and kernels that skip the zeros."""

from prunekit.sparse.storage import StorageError, decode, encode, load_state_dict, save_state_dict

__all__ = ["StorageError", "decode", "encode", "load_state_dict", "save_state_dict"]
