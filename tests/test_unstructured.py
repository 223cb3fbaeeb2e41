import pytest
import torch
from torch import nn

from prunekit.evaluate import layer_sparsity, prunable_sparsity
from prunekit.layers import prunable_weights
from prunekit.masks import get_mask
from prunekit.models import build_model
from prunekit.unstructured import prune_by_ratio, prune_by_threshold


def _masks(net: nn.Module) -> list[torch.Tensor]:
    return [get_mask(w.module, w.weight.name) for w in prunable_weights(net)]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet300")


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9, 0.99])
def test_global_ratio_is_exact(sparsity: float) -> None:
    net = _net()
    prune_by_ratio(net, sparsity, scope="global")
    total = sum(w.tensor.numel() for w in prunable_weights(net))
    pruned = sum(int((~mask).sum()) for mask in _masks(net))
    assert pruned == round(sparsity * total)


def test_layer_ratio_gives_every_layer_the_target() -> None:
    net = _net()
    prune_by_ratio(net, 0.75, scope="layer")
    assert all(s == pytest.approx(0.75, abs=1e-3) for s in layer_sparsity(net).values())


def test_global_prunes_the_globally_smallest_weights() -> None:
    net = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(0.01)  # all of layer 0 is smaller than all of layer 1
        net[1].weight.fill_(1.0)
    prune_by_ratio(net, 0.4, scope="global", min_density=0.05)
    assert int(net[0].weight_mask.sum()) == 20 and int(net[1].weight_mask.sum()) == 100
    # the floor keeps 5 % of layer 0 alive even when asked for more than it holds
    prune_by_ratio(net, 0.49, scope="global", min_density=0.05)
    assert int(net[0].weight_mask.sum()) == 5


def test_global_refuses_to_empty_layers() -> None:
    with pytest.raises(ValueError, match="per-layer floor"):
        prune_by_ratio(_net(), 0.995, min_density=0.01)


def test_pruning_only_grows_and_keeps_earlier_decisions() -> None:
    net = _net()
    prune_by_ratio(net, 0.5, criterion="random")
    first = [mask.clone() for mask in _masks(net)]
    prune_by_ratio(net, 0.8, criterion="random")
    second = _masks(net)
    assert all(torch.all(b <= a) for a, b in zip(first, second))  # nothing revived
    assert prunable_sparsity(net) == pytest.approx(0.8, abs=1e-4)
    prune_by_ratio(net, 0.3)  # asking for less never un-prunes
    assert prunable_sparsity(net) == pytest.approx(0.8, abs=1e-4)


def test_threshold_removes_exactly_the_small_weights() -> None:
    net = _net()
    theta = 0.02
    small = [(w.tensor.abs() < theta).clone() for w in prunable_weights(net)]
    prune_by_threshold(net, theta)
    for w, expected in zip(prunable_weights(net), small):
        assert torch.equal(~get_mask(w.module), expected)
        assert torch.all(w.tensor.abs()[get_mask(w.module)] >= theta)


def test_ignore_and_bad_arguments() -> None:
    net = _net()
    prune_by_ratio(net, 0.5, ignore=["net.5"], scope="layer")
    assert get_mask(net.net[5]) is None
    with pytest.raises(ValueError, match="not modules or parameters of the model"):
        prune_by_ratio(net, 0.5, ignore=["fc9"])
    with pytest.raises(ValueError, match="unknown criterion"):
        prune_by_ratio(net, 0.5, criterion="vibes")
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        prune_by_ratio(net, 1.0)
    with pytest.raises(ValueError, match="no weights prunekit can prune"):
        prune_by_ratio(nn.Sequential(nn.ReLU()), 0.5)
