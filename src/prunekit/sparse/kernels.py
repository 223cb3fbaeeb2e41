"""The compiled sparse kernel (``csrc/csr_kernels.c``) and the weight layout it reads.

Why a kernel of our own: ``torch.sparse`` CSR matmul reaches a fraction of the ideal speed-up
on a CPU, and none at small sparsity. Ours keeps the activations transposed, so each non-zero
``w[i, j]`` adds ``w · x[j, :]`` to ``y[i, :]`` over contiguous batch floats held in vector
registers, and cuts the weight into column panels (:class:`CSRPanels`) so that the slice of the
input a panel reads stays in cache. The library is plain C loaded with ctypes (no torch
headers, so ``pip install`` compiles it in seconds). If it is missing, :func:`kernel_library`
returns ``None`` with a logged warning and :func:`prunekit.sparse.deploy` keeps layers dense.

The row code is one source compiled per instruction set, its *kernel paths* (in order of
preference): ``avx512`` (16 lanes), ``avx2`` (8 lanes, FMA), ``avx2x16`` (the avx512 path's
16-lane source compiled for AVX2, so that CPUs without AVX-512 run and test that source; slow,
never chosen by itself) and ``generic`` (portable). :func:`kernel_paths` tells which run here;
a path the CPU cannot run is refused with a ``ValueError``, never attempted.

>>> import torch
>>> w = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
>>> panels = CSRPanels.from_dense(w)
>>> panels.nnz, tuple(panels.ptr.shape)
(2, (1, 3))
>>> if kernel_library() is not None:
...     out = panels.multiply_transposed(torch.ones(3, 1), threads=1, path="generic")
...     print(out.flatten().tolist())
... else:
...     print([2.0, 1.0])
[2.0, 1.0]
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import logging
import math
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

ABI_VERSION = 4
LIBRARY_STEM = "_csr_kernels"
MAX_U16_COLUMNS = 1 << 16
ROW_OVERHEAD = 2
"""Per row and panel, the work of loading and storing a row's accumulators, counted as this
many non-zeros when rows are split between threads."""


@functools.cache
def kernel_library() -> ctypes.CDLL | None:
    """The C library built beside this module, or None (with one logged warning) without it."""
    return load_kernel_library(Path(__file__).parent)


def load_kernel_library(directory: Path) -> ctypes.CDLL | None:
    """Load ``_csr_kernels*.so`` from ``directory``; None with a logged warning if unusable."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"{LIBRARY_STEM}{suffix}"
        if path.exists():
            return _bind(path)
    log.warning(
        "prunekit's sparse kernel is not built (no %s* in %s), so sparse layers stay dense; "
        "reinstall with a C compiler present: pip install -e .",
        LIBRARY_STEM,
        directory,
    )
    return None


class _Matrix(ctypes.Structure):
    """Mirror of the C ``pk_matrix``: the pointers and sizes every call of one matrix reuses."""

    _fields_ = [
        ("rows", ctypes.c_int64),
        ("cols", ctypes.c_int64),
        ("panels", ctypes.c_int64),
        ("panel_width", ctypes.c_int64),
        ("ptr", ctypes.c_void_p),
        ("idx", ctypes.c_void_p),
        ("val", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("row_cost", ctypes.c_void_p),
        ("idx_bytes", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    ]


_scratch_memory = threading.local()
SCRATCH_FLOATS = 1 << 21
"""The kernel threads transpose a row-major batch themselves while their buffers hold at most
this many floats (8 MB) or one copy of the batch; beyond (one wide panel, a huge batch, many
threads) one ``contiguous()`` copy uses less memory."""


def _scratch(count: int) -> Tensor:
    """``count`` float32 for the kernel threads' transposed panel slices, reused by every call
    from this Python thread (the kernel is done with them when it returns): a fresh buffer
    per call would be fresh pages to fault in, at every call."""
    buffer = getattr(_scratch_memory, "buffer", None)
    if buffer is None or buffer.numel() < count:
        buffer = _scratch_memory.buffer = torch.empty(count, dtype=torch.float32)
    return buffer


def _bind(path: Path) -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        log.warning("cannot load the sparse kernel %s (%s); sparse layers stay dense", path, err)
        return None
    if library.pk_abi_version() != ABI_VERSION:
        log.warning("sparse kernel %s is stale; rebuild it with pip install -e .", path)
        return None
    library.pk_spmm.argtypes = [
        ctypes.POINTER(_Matrix), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    library.pk_spmm.restype = ctypes.c_int
    library.pk_path_name.argtypes = [ctypes.c_int]
    library.pk_path_name.restype = ctypes.c_char_p
    library.pk_path_supported.argtypes = [ctypes.c_int]
    library.pk_path_lanes.argtypes = [ctypes.c_int]
    return library


@functools.cache
def kernel_paths() -> dict[str, bool]:
    """Every kernel path the library was built with, in order of preference: runs on this CPU?

    Empty when the library is not built. The first path that runs is the default.

    >>> paths = kernel_paths()
    >>> not paths or paths["generic"]
    True
    """
    library = kernel_library()
    if library is None:
        return {}
    return {
        library.pk_path_name(i).decode(): bool(library.pk_path_supported(i))
        for i in range(library.pk_path_count())
    }


def default_kernel_path() -> str | None:
    """The path the kernel runs unless told otherwise: the first of :func:`kernel_paths` that
    runs on this CPU (None without the library)."""
    return next((name for name, runs in kernel_paths().items() if runs), None)


def kernel_path_lanes(path: str) -> int:
    """Vector lanes of ``path``'s widest blocks: batches below this many columns run as
    single-column dot products there."""
    return int(kernel_library().pk_path_lanes(_known_index(path)))  # type: ignore[union-attr]


def _known_index(path: str) -> int:
    """The C index of ``path``; ValueError naming the choices if this build lacks it."""
    paths = kernel_paths()
    if path not in paths:
        built = ", ".join(paths) or "none (the kernel is not built)"
        raise ValueError(f"unknown kernel path {path!r}; this build has {built}")
    return list(paths).index(path)


def _path_index(path: str) -> int:
    """The C index of ``path``; ValueError naming the choices if it is unknown or cannot run."""
    index, paths = _known_index(path), kernel_paths()
    if not paths[path]:
        runnable = ", ".join(name for name, runs in paths.items() if runs)
        raise ValueError(
            f"kernel path {path!r} cannot run on this CPU (it lacks the instructions); "
            f"choose one of: {runnable}"
        )
    return index


class CSRPanels(nn.Module):
    """A sparse matrix (and optional bias) as vertical panels of ``panel_width`` columns.

    Each panel is an ordinary CSR matrix. Buffers: ``ptr`` (panels × rows+1 offsets), ``idx``
    (column within the panel: int16 holding uint16 bits when panels are ≤ 65536 wide, else
    int32), ``val`` (float32), ``bias`` (float32 or None) and ``row_cost`` (prefix sums of
    per-row work, to give threads equal shares). One panel is plain CSR.

    >>> CSRPanels.from_dense(torch.eye(6), panel_width=4).panels
    2
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        panel_width: int,
        ptr: Tensor,
        idx: Tensor,
        val: Tensor,
        bias: Tensor | None = None,
        *,
        path: str | None = None,
    ) -> None:
        super().__init__()
        self.rows, self.cols, self.panel_width = rows, cols, panel_width
        self._path = path
        self._path_code = -1 if path is None else _path_index(path)  # refused here, not later
        self.panels = int(ptr.shape[0])
        self.register_buffer("ptr", ptr)
        self.register_buffer("idx", idx)
        self.register_buffer("val", val)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        per_row = (ptr[:, 1:] - ptr[:, :-1]).sum(dim=0) + ROW_OVERHEAD * self.panels
        zero = torch.zeros(1, dtype=torch.int64)
        self.register_buffer("row_cost", torch.cat([zero, per_row.cumsum(0)]))
        self._descriptor: _Matrix | None = None

    @property
    def path(self) -> str | None:
        """The kernel path every multiplication uses (None: the CPU's best)."""
        return self._path

    @property
    def nnz(self) -> int:
        return int(self.val.numel())

    @classmethod
    def from_dense(
        cls,
        weight: Tensor,
        panel_width: int | None = None,
        bias: Tensor | None = None,
        *,
        path: str | None = None,
    ) -> CSRPanels:
        """Pack the non-zeros of a 2-D float weight; ``panel_width=None`` means one panel.

        ``path`` is the kernel path every multiplication uses (None: :func:`default_kernel_path`).

        >>> CSRPanels.from_dense(torch.tensor([[0.0, 1.5]])).val.tolist()
        [1.5]
        """
        if weight.dim() != 2:
            raise ValueError(f"CSRPanels needs a 2-D weight, got shape {tuple(weight.shape)}")
        rows, cols = weight.shape
        width = cols if panel_width is None else min(panel_width, cols)
        if width < 1:
            raise ValueError(f"panel_width must be >= 1, got {panel_width}")
        panels = max(1, math.ceil(cols / width))
        weight = weight.detach().to("cpu", torch.float32)
        # (panels, rows, width): nonzero() then lists the entries panel-major, then by row, then
        # by column -- the kernel's order -- without a sort (a stable argsort of a few million
        # non-zeros takes seconds)
        padded = F.pad(weight, (0, panels * width - cols))
        by_panel = padded.reshape(rows, panels, width).transpose(0, 1).contiguous()
        panel, row, local = torch.nonzero(by_panel, as_tuple=True)
        counts = torch.bincount(panel * rows + row, minlength=panels * rows)
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        ptr = torch.stack([starts[p * rows : p * rows + rows + 1] for p in range(panels)])
        values = by_panel[panel, row, local]
        local = local.to(torch.int32)
        idx = local.to(torch.int16) if width <= MAX_U16_COLUMNS else local  # int16 wraps to u16
        return cls(
            rows, cols, width, ptr.contiguous(), idx.contiguous(), values, bias, path=path,
        )  # fmt: skip

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._descriptor = None  # .to(), .float(), ... may move the buffers
        return super()._apply(fn, recurse)

    def _describe(self) -> _Matrix:
        if self._descriptor is None:
            buffers = (self.ptr, self.idx, self.val, self.row_cost)
            if any(b.device.type != "cpu" or not b.is_contiguous() for b in buffers):
                raise RuntimeError("CSRPanels buffers must stay contiguous on the CPU")
            self._descriptor = _Matrix(
                self.rows, self.cols, self.panels, self.panel_width,
                self.ptr.data_ptr(), self.idx.data_ptr(), self.val.data_ptr(),
                None if self.bias is None else self.bias.data_ptr(), self.row_cost.data_ptr(),
                self.idx.element_size(), 0,
            )  # fmt: skip
        return self._descriptor

    def multiply_transposed(self, xt: Tensor, *, threads: int, path: str | None = None) -> Tensor:
        """``W @ xt + bias[:, None]`` for ``xt`` of shape (cols, batch), float32.

        ``xt`` may be the transpose of a row-major (batch, cols) tensor — ``x.t()``, what a
        Linear layer is given — and then each kernel thread transposes each panel's slice into
        a buffer of its own just before using it, instead of a single-threaded
        ``contiguous()`` copy first (on 64 × 4096 that copy took a seventh of the
        multiplication's time).

        ``path`` forces a kernel path for this call (default: this matrix's ``path``, else the
        CPU's best); one this CPU cannot run raises ``ValueError`` before anything runs.
        """
        library = kernel_library()
        if library is None:
            raise RuntimeError("the sparse kernel is not built; reinstall with pip install -e .")
        if xt.dtype != torch.float32 or xt.dim() != 2 or xt.shape[0] != self.cols:
            raise ValueError(
                f"expected float32 input of shape ({self.cols}, batch), "
                f"got {xt.dtype} {tuple(xt.shape)}"
            )
        index = self._path_code if path is None else _path_index(path)
        x = scratch = None
        if not xt.is_contiguous():
            slices = max(1, threads) * self.panel_width * xt.shape[1]  # floats, all threads
            if xt.t().is_contiguous() and slices <= max(xt.numel(), SCRATCH_FLOATS):
                x, scratch = xt.t(), _scratch(slices)  # row-major: the kernel threads copy it
            else:
                xt = xt.contiguous()
        yt = torch.empty(self.rows, xt.shape[1], dtype=torch.float32)
        code = library.pk_spmm(
            self._describe(), xt.data_ptr(), yt.data_ptr(), xt.shape[1], threads, index,
            None if x is None else x.data_ptr(), None if scratch is None else scratch.data_ptr(),
        )
        if code != 0:
            raise RuntimeError(f"sparse kernel rejected its arguments (code {code})")
        return yt

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.rows * self.cols)
        path = self.path or default_kernel_path()
        return (
            f"{self.rows}x{self.cols}, density={density:.3f}, panel_width={self.panel_width}, "
            f"path={path}"
        )
