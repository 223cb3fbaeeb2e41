import pytest
import torch
from torch import nn

from prunekit.sparse.layers import SparseConv2d, SparseLinear


def pruned_(module: nn.Module, sparsity: float = 0.8) -> nn.Module:
    with torch.no_grad():
        w = module.weight
        w[torch.rand_like(w) < sparsity] = 0
    return module


@pytest.mark.parametrize("shape", [(5, 24), (2, 3, 24), (24,)])
def test_sparse_linear_equals_linear(shape: tuple[int, ...]) -> None:
    dense = pruned_(nn.Linear(24, 10))
    sparse = SparseLinear.from_dense(dense, panel_width=8)
    x = torch.randn(shape)
    with torch.inference_mode():
        out = sparse(x)
        assert out.shape == dense(x).shape
        assert torch.allclose(out, dense(x), atol=1e-5)


def test_chained_layers_pass_transposed_views_without_breaking() -> None:
    dense = nn.Sequential(
        pruned_(nn.Linear(32, 32)), nn.ReLU(), pruned_(nn.Linear(32, 4, bias=False))
    )
    sparse = nn.Sequential(
        SparseLinear.from_dense(dense[0]), nn.ReLU(), SparseLinear.from_dense(dense[2])
    )
    x = torch.randn(9, 32)
    with torch.inference_mode():
        assert torch.allclose(sparse(x), dense(x), atol=1e-5)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 6, 3, padding=1),
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
        nn.Conv2d(4, 6, (1, 3), padding=(0, 1), bias=False),
        nn.Conv2d(8, 5, 1),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_sparse_conv_equals_conv(conv: nn.Conv2d, batch: int) -> None:
    pruned_(conv, 0.7)
    sparse = SparseConv2d.from_dense(conv, panel_width=16)
    x = torch.randn(batch, conv.in_channels, 9, 7)
    with torch.inference_mode():
        assert torch.allclose(sparse(x), conv(x), atol=1e-5)


def test_unsupported_convs_are_refused() -> None:
    grouped = nn.Conv2d(4, 4, 3, groups=2)
    assert not SparseConv2d.supports(grouped)
    assert not SparseConv2d.supports(nn.Conv2d(4, 4, 3, padding="same"))
    assert not SparseConv2d.supports(nn.Conv2d(4, 4, 3, padding_mode="reflect"))
    with pytest.raises(ValueError, match="keep it dense"):
        SparseConv2d.from_dense(grouped)


def test_deployed_layers_refuse_gradients() -> None:
    sparse = SparseLinear.from_dense(nn.Linear(4, 2))
    assert list(sparse.parameters()) == []
    with pytest.raises(RuntimeError, match="inference-only"):
        sparse(torch.randn(1, 4, requires_grad=True))
    with pytest.raises(RuntimeError, match="inference-only"):
        SparseConv2d.from_dense(nn.Conv2d(1, 1, 1))(torch.randn(1, 1, 2, 2, requires_grad=True))


def test_fixed_thread_count_is_used() -> None:
    dense = pruned_(nn.Linear(16, 16))
    x = torch.randn(4, 16)
    with torch.inference_mode():
        for threads in (1, 2, None):
            assert torch.allclose(
                SparseLinear.from_dense(dense, threads=threads)(x), dense(x), atol=1e-5
            )
