import pytest
import torch
from torch import nn

from prunekit.data import load_dataset
from prunekit.evaluate import evaluate_accuracy
from prunekit.models import build_model
from prunekit.regularizers import L1, L2, BNScaleL1, ElasticNet, ProximalL1
from prunekit.train import fit


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def test_penalties_cover_weights_not_biases_or_norms() -> None:
    net = _net()
    weights = [net[0].weight, net[4].weight]
    assert L1(0.5)(net).item() == pytest.approx(0.5 * sum(w.abs().sum().item() for w in weights))
    assert L2(0.5)(net).item() == pytest.approx(0.25 * sum(float((w.detach() ** 2).sum()) for w in weights))
    assert ElasticNet(0.1, 0.2)(net).item() == pytest.approx(L1(0.1)(net).item() + L2(0.2)(net).item())
    assert BNScaleL1(2.0)(net).item() == pytest.approx(2.0 * net[1].weight.abs().sum().item())
    grads = torch.autograd.grad(L1(1.0)(net), [net[0].bias, net[1].weight], allow_unused=True)
    assert all(g is None for g in grads)


def test_penalty_gradients() -> None:
    net = _net()
    L2(0.3)(net).backward()
    torch.testing.assert_close(net[0].weight.grad, 0.3 * net[0].weight.detach())
    net.zero_grad()
    L1(0.3)(net).backward()
    torch.testing.assert_close(net[4].weight.grad, 0.3 * net[4].weight.detach().sign())


def test_negative_lambda_and_missing_bn_are_refused() -> None:
    with pytest.raises(ValueError, match="lam must be >= 0"):
        L1(-1.0)
    with pytest.raises(ValueError, match="no"):
        BNScaleL1(0.1)(nn.Linear(2, 2))


def test_l1_in_the_loss_makes_weights_smaller_than_l2_and_proximal_makes_exact_zeros() -> None:
    data = load_dataset("digits")
    results = {}
    for name, regs, cbs in [
        ("none", [], []), ("l1", [L1(1e-3)], []), ("prox", [], [ProximalL1(0.02)])
    ]:
        torch.manual_seed(0)
        net = build_model("mlp", in_features=64, hidden=(64,))
        fit(net, data.x_train, data.y_train, epochs=3, lr=0.1, optimizer="sgd", regularizers=regs,
            callbacks=cbs, progress=False)
        w = torch.cat([p.detach().flatten() for n, p in net.named_parameters() if "weight" in n])
        accuracy = evaluate_accuracy(net, data.x_test, data.y_test)["accuracy"]
        results[name] = (float(w.abs().sum()), float((w == 0).float().mean()), accuracy)
    assert results["l1"][0] < 0.8 * results["none"][0]
    assert results["none"][1] == 0.0 and results["l1"][1] == 0.0
    assert results["prox"][1] > 0.5  # exact zeros come only from the proximal step
    assert min(r[2] for r in results.values()) > 0.85
