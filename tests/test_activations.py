import pytest
import torch
from torch import nn

from prunekit.activations import (
    Entmax15,
    Sparsemax,
    SparsemaxLoss,
    activation_sparsity,
    entmax15,
    output_sparsity,
    sparsemax,
)


def _reference_sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Projection onto the simplex by bisection on τ: slow, obviously right."""
    lo, hi = z.min() - 1, z.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if (z - tau).clamp(min=0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return (z - (lo + hi) / 2).clamp(min=0)


def _reference_entmax15(z: torch.Tensor) -> torch.Tensor:
    lo, hi = z.min() / 2 - 1, z.max() / 2
    for _ in range(200):
        tau = (lo + hi) / 2
        if ((z / 2 - tau).clamp(min=0) ** 2).sum() > 1:
            lo = tau
        else:
            hi = tau
    return (z / 2 - (lo + hi) / 2).clamp(min=0) ** 2


@pytest.mark.parametrize(("fn", "reference"), [(sparsemax, _reference_sparsemax),
                                               (entmax15, _reference_entmax15)])
def test_outputs_are_distributions_equal_to_a_reference(fn, reference) -> None:
    z = torch.randn(50, 7, dtype=torch.float64) * 3
    p = fn(z)
    assert torch.all(p >= 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(50, dtype=torch.float64))
    for row, prow in zip(z, p):
        torch.testing.assert_close(prow, reference(row), atol=1e-8, rtol=0)
    assert (p == 0).any()  # exact zeros, unlike softmax


def test_known_cases() -> None:
    assert sparsemax(torch.tensor([0.0, 0.0])).tolist() == [0.5, 0.5]
    assert sparsemax(torch.tensor([3.0, 0.0, 0.0])).tolist() == [1.0, 0.0, 0.0]
    assert entmax15(torch.tensor([1.0, 1.0, 1.0, 1.0])).tolist() == [0.25] * 4
    # dim handling: column-wise equals row-wise on the transpose
    z = torch.randn(4, 6)
    torch.testing.assert_close(sparsemax(z, dim=0), sparsemax(z.T).T)
    torch.testing.assert_close(Entmax15(dim=0)(z), entmax15(z.T).T)


@pytest.mark.parametrize("fn", [sparsemax, entmax15])
def test_gradcheck(fn) -> None:
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (z,), eps=1e-6, atol=1e-5)
    z3 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, dim=1), (z3,), eps=1e-6, atol=1e-5)


def test_sparsemax_loss_value_and_gradient() -> None:
    z = torch.tensor([[1.0, 0.8, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 2])
    loss = SparsemaxLoss()(z, y)
    # by hand: row 0: S={0,1}, τ=0.4 → ½((1−.16)+(.64−.16)) − 0.8 + ½ = 0.36
    #          row 1: S=all, τ=−1/3 → ½·3·(0 − 1/9) − 0 + ½ = 1/3
    assert loss.item() == pytest.approx((0.36 + 1 / 3) / 2)
    loss.backward()
    expected = (sparsemax(z.detach()) - torch.nn.functional.one_hot(y, 3)) / 2
    torch.testing.assert_close(z.grad, expected)


def test_activation_sparsity_counts_exact_zeros() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), Sparsemax())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 0, 1.0], [0, 0, -1.0]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 0.0, -2.0]])
    zeros = activation_sparsity(net, x)
    assert zeros["1"] == 0.5  # each sample: exactly two of four ReLU outputs positive
    probs = Sparsemax()(net[2](net[1](net[0](x))))
    assert zeros["3"] == pytest.approx(float((probs == 0).float().mean()))
    assert not net[1]._forward_hooks  # hooks removed afterwards


def test_output_sparsity() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert output_sparsity(logits) == pytest.approx(5 / 8)
    assert output_sparsity(logits, "softmax") == 0.0
    with pytest.raises(ValueError, match="unknown mapping"):
        output_sparsity(logits, "argmax")
