import pytest
import torch

from prunekit.criteria import CRITERIA, magnitude, random, taylor


def test_registry_names() -> None:
    assert {"magnitude", "random", "taylor"} <= set(CRITERIA)


def test_magnitude_ranks_by_absolute_value() -> None:
    w = torch.tensor([0.3, -5.0, 0.0, 1.0])
    assert torch.argsort(magnitude(w)).tolist() == [2, 0, 3, 1]


def test_random_is_seeded_and_uninformed() -> None:
    w = torch.arange(1000.0)
    torch.manual_seed(3)
    a = random(w)
    torch.manual_seed(3)
    assert torch.equal(a, random(w))
    # no correlation with magnitude
    assert abs(torch.corrcoef(torch.stack([a, w]))[0, 1]) < 0.1


def test_taylor_is_weight_times_gradient_and_needs_a_gradient() -> None:
    w = torch.tensor([2.0, -1.0, 4.0], requires_grad=True)
    (w * torch.tensor([0.5, 3.0, 0.0])).sum().backward()
    assert taylor(w).tolist() == [1.0, 3.0, 0.0]
    with pytest.raises(ValueError, match="needs gradients"):
        taylor(torch.ones(2, requires_grad=True))
