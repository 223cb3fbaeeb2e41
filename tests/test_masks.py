"""Masks: pruned weights stay exactly zero through real optimizer steps; strip leaves no trace."""

import pytest
import torch
from torch import nn

from prunekit.masks import (
    MaskEnforcement,
    apply_masks,
    get_mask,
    has_masks,
    hold_masks,
    set_mask,
    strip,
    zero_pruned_state,
)
from prunekit.train import fit
from prunekit.unstructured import prune_by_ratio


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 12, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_set_mask_zeroes_and_stores_a_bool_buffer() -> None:
    layer = nn.Linear(3, 2)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    set_mask(layer, "weight", mask)
    assert torch.equal(layer.weight != 0, mask)
    assert layer.weight_mask.dtype == torch.bool and "weight_mask" in layer.state_dict()
    assert get_mask(layer) is layer.weight_mask and get_mask(layer, "bias") is None


def test_set_mask_rejects_wrong_shape_and_missing_tensor() -> None:
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"shape \(3,\), but the tensor has \(2, 3\)"):
        set_mask(layer, "weight", torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no tensor 'gamma'"):
        set_mask(layer, "gamma", torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("optimizer", "kwargs"),
    [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}), ("adam", {"weight_decay": 1e-3}),
     ("adamw", {"weight_decay": 1e-2})],
)
def test_pruned_weights_and_their_optimizer_state_stay_zero(optimizer: str, kwargs: dict) -> None:
    """Momentum and Adam moments built up *before* pruning must not resurrect a weight."""
    net = _net()
    x, y = _data()
    # dense warm-up without masks, then prune and continue with the optimizer's state intact
    opt_state_probe: dict = {}

    class PruneAtStep3(MaskEnforcement):
        def on_step_begin(self, step, model, opt):
            if step == 3:
                prune_by_ratio(model, 0.7, scope="layer")
                zero_pruned_state(opt, model)
            opt_state_probe["opt"] = opt

    fit(net, x, y, epochs=3, batch_size=16, optimizer=optimizer, lr=0.05,
        callbacks=[PruneAtStep3()], progress=False, **kwargs)
    opt = opt_state_probe["opt"]
    for layer in (net[0], net[2]):
        pruned = ~layer.weight_mask
        assert pruned.float().mean() == pytest.approx(0.7, abs=0.01)
        assert torch.all(layer.weight[pruned] == 0)
        for value in opt.state[layer.weight].values():
            if value.shape == pruned.shape:
                assert torch.all(value[pruned] == 0)
        assert torch.all(layer.weight[~pruned] != 0)  # the rest did train


def test_fit_enforces_masks_without_being_asked() -> None:
    net = _net()
    prune_by_ratio(net, 0.8)
    x, y = _data()
    fit(net, x, y, epochs=2, optimizer="sgd", momentum=0.9, lr=0.1, progress=False)
    for layer in (net[0], net[2]):
        assert torch.all(layer.weight[~layer.weight_mask] == 0)


def test_apply_masks_rezeroes_after_outside_edits() -> None:
    net = _net()
    prune_by_ratio(net, 0.5, scope="layer")
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    apply_masks(net)
    assert torch.equal(net[0].weight != 0, net[0].weight_mask)


def test_pruned_entries_are_positive_zeros() -> None:
    """-0.0 is a non-zero bit pattern to a compressed format: pruning must leave +0.0."""
    net = _net()
    prune_by_ratio(net, 0.6)
    fit(net, *_data(), epochs=1, optimizer="adam", progress=False)
    strip(net)
    for layer in (net[0], net[2]):
        zeros = layer.weight == 0
        assert zeros.any() and not torch.signbit(layer.weight[zeros]).any()


def test_strip_leaves_a_plain_module_with_the_same_zeros() -> None:
    net = _net()
    prune_by_ratio(net, 0.6)
    zeros_before = [(p == 0).clone() for p in net.parameters()]
    plain_keys = set(_net().state_dict())
    assert has_masks(net)
    assert strip(net) is net
    assert not has_masks(net)
    assert set(net.state_dict()) == plain_keys
    assert not any(name.endswith("_mask") for name, _ in net.named_buffers())
    assert all(torch.equal(p == 0, z) for p, z in zip(net.parameters(), zeros_before))
    fresh = _net()
    fresh.load_state_dict(net.state_dict())  # loads into the unpruned architecture
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_torch_prune_masks_are_not_mistaken_for_ours() -> None:
    import torch.nn.utils.prune as torch_prune

    layer = nn.Linear(4, 4)
    torch_prune.l1_unstructured(layer, "weight", amount=0.5)
    assert not has_masks(layer)


def _plain_loop(net: nn.Module, opt: torch.optim.Optimizer, steps: int, *, clip: float = 0.0,
                amp: bool = False) -> None:
    """A user's own training loop: no prunekit call anywhere in it."""
    x, y = _data(16 * steps)
    scaler = torch.amp.GradScaler("cpu", enabled=amp)
    for i in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(net(x[16 * i: 16 * (i + 1)]), y[16 * i: 16 * (i + 1)])
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        scaler.step(opt)
        scaler.update()


_OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
}


@pytest.mark.parametrize("optimizer", sorted(_OPTIMIZERS))
@pytest.mark.parametrize(("clip", "amp"), [(0.0, False), (1.0, True)])
def test_masks_hold_in_a_plain_loop(optimizer: str, clip: float, amp: bool) -> None:
    """Dense warm-up builds optimizer state; pruning then must hold without any prunekit call."""
    net = _net()
    opt = _OPTIMIZERS[optimizer](net.parameters())
    _plain_loop(net, opt, 3)
    prune_by_ratio(net, 0.8)
    before = [layer.weight.detach().clone() for layer in (net[0], net[2])]
    _plain_loop(net, opt, 5, clip=clip, amp=amp)
    for layer, start in zip((net[0], net[2]), before):
        pruned = ~layer.weight_mask
        assert torch.all(layer.weight[pruned] == 0)
        assert torch.all(layer.weight.grad[pruned] == 0)  # what clipping and the scaler saw
        for value in opt.state[layer.weight].values():
            if value.shape == pruned.shape:
                assert torch.all(value[pruned] == 0)
        assert not torch.equal(layer.weight[~pruned], start[~pruned])  # the rest trained


def test_a_deep_copy_holds_after_hold_masks_and_strip_releases_the_gradients() -> None:
    import copy

    net = _net()
    prune_by_ratio(net, 0.7)
    twin = copy.deepcopy(net)
    assert hold_masks(twin) == 2
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    _plain_loop(twin, opt, 3)
    assert torch.all(twin[0].weight[~twin[0].weight_mask] == 0)
    strip(twin)
    _plain_loop(twin, opt, 1)
    assert int((twin[0].weight == 0).sum()) < int(0.7 * twin[0].weight.numel())  # free again


def test_an_optimizer_without_masked_weights_is_left_alone() -> None:
    pruned, dense = _net(), _net()
    prune_by_ratio(pruned, 0.5)
    opt = torch.optim.SGD(dense.parameters(), lr=0.1)
    _plain_loop(dense, opt, 2)
    assert int((dense[0].weight == 0).sum()) == 0
