import pytest
import torch
from torch import nn

from prunekit.masks import strip
from prunekit.sparse.nm import prune_nm
from prunekit.sparse.semi_structured import (
    SemiStructuredUnavailable,
    _convert,
    deploy_semi_structured,
    semi_structured_unavailable_reason,
)

REASON = semi_structured_unavailable_reason()


def two_four_mlp(width: int = 128) -> nn.Module:
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width),
                          nn.ReLU(), nn.Linear(width, 10))
    prune_nm(model[0], 2, 4)
    prune_nm(model[2], 2, 4)
    return strip(model).eval()


@pytest.mark.skipif(REASON is None, reason="a suitable GPU is present")
def test_without_a_gpu_it_refuses_in_one_line() -> None:
    assert "\n" not in REASON
    with pytest.raises(SemiStructuredUnavailable, match="needs a GPU: no CUDA GPU"):
        deploy_semi_structured(two_four_mlp(), torch.randn(16, 128))


def test_each_layer_says_why_it_stayed_dense() -> None:
    model = two_four_mlp()
    before = [m.weight.clone() for m in model if isinstance(m, nn.Linear)]
    if REASON is None:
        model = model.cuda().half()
    layers = _convert(model)
    assert layers["4"] == "dense: not 2:4 sparse"
    if REASON is not None:  # a CPU tensor cannot become semi-structured: said, not hidden
        assert all(layers[name].startswith("dense: ") for name in ("0", "2"))
        assert "CUDA" in layers["0"]
        after = [m.weight for m in model if isinstance(m, nn.Linear)]
        assert all(torch.equal(a, b) for a, b in zip(after, before))
    else:
        assert layers["0"] == layers["2"] == "2:4 sparse"


@pytest.mark.skipif(REASON is not None, reason=f"2:4 kernels unavailable: {REASON}")
def test_on_a_gpu_the_sparse_model_matches_dense_and_is_timed() -> None:
    model = two_four_mlp(1024)
    x = torch.randn(64, 1024)
    deployed, result = deploy_semi_structured(model, x, budget_s=2.0)
    assert result.dense_ms and result.sparse_ms and result.band is not None
    assert result.deployed == (result.speedup > 1.0 and not result.band.contains(result.speedup))
    with torch.inference_mode():
        expected = model.cuda().half()(x.cuda().half())
        assert torch.allclose(deployed(x.cuda().half()), expected, atol=5e-2 * expected.abs().max())
