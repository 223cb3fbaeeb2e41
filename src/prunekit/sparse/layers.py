"""Inference-only Linear and Conv2d layers that run on the sparse kernel.

Why separate modules: a deployed layer holds its weight as column-panel CSR
(:class:`~prunekit.sparse.kernels.CSRPanels`), not as a dense parameter, so it cannot be
trained — it refuses inputs that require grad instead of silently breaking autograd. Outputs are
returned as transposed views of the kernel's ``(out, batch)`` result: an elementwise op (ReLU)
keeps that layout and the next sparse layer then reads it without a copy.

>>> import torch
>>> from torch import nn
>>> dense = nn.Linear(8, 4)
>>> with torch.no_grad():
...     dense.weight[:, ::2] = 0
>>> sparse = SparseLinear.from_dense(dense)
>>> x = torch.randn(3, 8)
>>> with torch.no_grad():
...     print(torch.allclose(sparse(x), dense(x), atol=1e-5))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.sparse.kernels import CSRPanels


def _refuse_grad(module: nn.Module, x: Tensor) -> None:
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError(
            f"{type(module).__name__} is inference-only (its weight is a compressed sparse "
            "buffer, not a parameter): run it under torch.inference_mode() or torch.no_grad(), "
            "and fine-tune the dense model before prunekit.sparse.deploy"
        )


class SparseLinear(nn.Module):
    """``nn.Linear`` for inference with a sparse weight; ``threads=None`` follows torch's setting.

    >>> layer = SparseLinear.from_dense(nn.Linear(16, 2), panel_width=8, threads=1)
    >>> layer.matrix.panels
    2
    """

    def __init__(self, matrix: CSRPanels, *, threads: int | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = matrix.cols, matrix.rows
        self.matrix = matrix
        self.threads = threads

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        *,
        panel_width: int | None = None,
        threads: int | None = None,
        path: str | None = None,
    ) -> SparseLinear:
        """``path`` names the kernel path (None: the CPU's best, see ``kernel_paths``)."""
        matrix = CSRPanels.from_dense(linear.weight, panel_width, linear.bias, path=path)
        return cls(matrix, threads=threads)

    def forward(self, x: Tensor) -> Tensor:
        _refuse_grad(self, x)
        threads = torch.get_num_threads() if self.threads is None else self.threads
        if x.dim() == 2:  # the common case, kept short: this layer may take microseconds
            return self.matrix.multiply_transposed(x.t(), threads=threads).t()
        xt = x.reshape(-1, self.in_features).t()  # free when x is our own transposed output
        yt = self.matrix.multiply_transposed(xt, threads=threads)
        return yt.t().reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, threads={self.threads}"


class SparseConv2d(nn.Module):
    """``nn.Conv2d`` (groups=1, zero padding) for inference, as a sparse matmul over patches.

    A 1×1 convolution with stride 1 needs no patch extraction at all; others use ``F.unfold``.

    >>> conv = nn.Conv2d(4, 8, 3, padding=1)
    >>> sparse = SparseConv2d.from_dense(conv)
    >>> sparse(torch.randn(1, 4, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(
        self,
        matrix: CSRPanels,
        *,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = matrix.rows
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size, stride, padding, dilation,
        )  # fmt: skip
        self.matrix = matrix
        self.threads = threads

    @staticmethod
    def supports(conv: nn.Conv2d) -> bool:
        """True for the convolutions this layer reproduces exactly (groups 1, zero padding)."""
        return (
            type(conv) is nn.Conv2d
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
        )

    @classmethod
    def from_dense(
        cls,
        conv: nn.Conv2d,
        *,
        panel_width: int | None = None,
        threads: int | None = None,
        path: str | None = None,
    ) -> SparseConv2d:
        if not cls.supports(conv):
            raise ValueError(
                f"{conv} is not supported by SparseConv2d (needs groups=1, padding_mode='zeros' "
                "and numeric padding); keep it dense"
            )
        weight = conv.weight.reshape(conv.out_channels, -1)
        return cls(
            CSRPanels.from_dense(weight, panel_width, conv.bias, path=path),
            kernel_size=tuple(conv.kernel_size),
            stride=tuple(conv.stride),
            padding=tuple(conv.padding),
            dilation=tuple(conv.dilation),
            threads=threads,
        )

    def forward(self, x: Tensor) -> Tensor:
        _refuse_grad(self, x)
        if x.dim() != 4:
            raise ValueError(f"SparseConv2d expects (N, C, H, W) input, got {tuple(x.shape)}")
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        out_h = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        out_w = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        pointwise = (kh, kw) == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)
        if pointwise:
            xt = x.float().transpose(0, 1).reshape(c, n * h * w)
        else:
            patches = F.unfold(
                x.float(), self.kernel_size, self.dilation, self.padding, self.stride
            )
            xt = patches.transpose(0, 1).reshape(patches.shape[1], n * out_h * out_w)
        threads = torch.get_num_threads() if self.threads is None else self.threads
        yt = self.matrix.multiply_transposed(xt, threads=threads)
        return yt.reshape(self.out_channels, n, out_h, out_w).transpose(0, 1)

    def extra_repr(self) -> str:
        return (
            f"out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, threads={self.threads}"
        )
