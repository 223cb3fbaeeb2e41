"""Deployment: BatchNorm folding, channels-last, and oneDNN-fused convs equal the eager model."""

from __future__ import annotations

import copy
import operator
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.models import build_model
from prunekit.structured.deploy import (
    Activation,
    FusedConv,
    fold_batch_norms,
    fuse_for_cpu,
    prepare_for_cpu,
)
from prunekit.structured.prune import prune_channels


def _with_statistics(model: nn.Module, shape: tuple[int, ...] = (8, 3, 32, 32)) -> nn.Module:
    """Train-mode passes give every BatchNorm non-trivial running statistics."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(*shape))
    return model.eval()


def test_fold_keeps_a_pruned_resnet_outputs() -> None:
    model = _with_statistics(build_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    prune_channels(model, x, ratio=0.5)
    expected = model(x)
    assert fold_batch_norms(model) == 21  # stem, 18 in blocks, 2 shortcuts
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_prepare_for_cpu_is_channels_last_and_equivalent() -> None:
    model = _with_statistics(build_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    prepare_for_cpu(model)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


ZOO_CNNS = [
    ("lenet5", (4, 1, 28, 28), 2, 0),
    ("vgg11", (2, 3, 32, 32), 8, 0),
    ("resnet20", (4, 3, 32, 32), 21, 9),
    ("resnet56", (2, 3, 32, 32), 57, 27),
    ("resnet18", (2, 3, 64, 64), 20, 8),
    ("resnet50", (2, 3, 64, 64), 53, 16),
    ("mobilenet_v2", (2, 3, 64, 64), 52, 10),
]


@pytest.mark.parametrize(("name", "shape", "convs", "residuals"), ZOO_CNNS)
def test_fused_model_equals_eager_on_every_zoo_cnn(
    name: str, shape: tuple[int, ...], convs: int, residuals: int
) -> None:
    model = _with_statistics(build_model(name, in_channels=shape[1]), shape)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_for_cpu(model, x.to(memory_format=torch.channels_last))
        out_cl = fused(x.to(memory_format=torch.channels_last))
        out_plain = fused(x)
    scale = expected.abs().max().item()
    torch.testing.assert_close(out_cl, expected, atol=1e-4 * max(1.0, scale), rtol=1e-4)
    torch.testing.assert_close(out_plain, expected, atol=1e-4 * max(1.0, scale), rtol=1e-4)
    layers = [m for m in fused.modules() if isinstance(m, FusedConv)]
    assert len(layers) == convs  # every conv runs fused
    assert sum(m.residual for m in layers) == residuals  # every residual add went into a conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    modules = dict(fused.named_modules())
    activations_after_convs = [
        n for n in fused.graph.nodes
        if n.op == "call_module" and isinstance(modules[str(n.target)], (nn.ReLU, nn.ReLU6))
        and isinstance(modules.get(str(n.args[0].target)), FusedConv)
    ]
    assert not activations_after_convs, "an activation after a conv runs as a separate pass"
    adds = [n for n in fused.graph.nodes if n.target in (operator.add, torch.add, "add")]
    assert not adds


def test_fuse_leaves_the_original_model_alone() -> None:
    model = _with_statistics(build_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    fuse_for_cpu(model, x)
    assert isinstance(model.bn1, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), expected)


ACTIVATIONS = [
    nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-1.0, 2.0), nn.LeakyReLU(0.2), nn.SiLU(), nn.Hardswish(),
    nn.Hardsigmoid(), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.GELU(approximate="tanh"),
]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: repr(a))
def test_each_activation_runs_inside_the_conv(activation: nn.Module) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), activation).eval()
    x = torch.randn(2, 3, 12, 12)
    fused = fuse_for_cpu(net, x)
    assert [type(m) for m in fused.children()] == [FusedConv]
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


class _Functional(nn.Module):
    """Functional activations and a residual added by ``torch.add``, then ``F.relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.sigmoid(self.a(x))
        return F.relu(torch.add(self.b(y), x))


class _AddThenTanh(nn.Module):
    """oneDNN fuses only ReLU after an add: the add goes into the conv, tanh stays."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x + self.conv(x))


def test_functional_activations_and_residuals_fuse() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 10, 10)
    for net, residuals, activations in ((_Functional(), 1, {"sigmoid", "relu"}),
                                        (_AddThenTanh(), 1, set())):
        fused = fuse_for_cpu(net.eval(), x)
        layers = [m for m in fused.modules() if isinstance(m, FusedConv)]
        assert sum(m.residual for m in layers) == residuals
        assert {m.activation.name for m in layers if m.activation} == activations
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


def test_a_broadcast_add_is_not_fused_but_still_correct() -> None:
    class Bias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.shift = nn.Parameter(torch.randn(1, 4, 1, 1))

        def forward(self, x: Tensor) -> Tensor:
            return self.conv(x) + self.shift

    net = Bias().eval()
    x = torch.randn(2, 4, 6, 6)
    fused = fuse_for_cpu(net, x)
    assert not any(m.residual for m in fused.modules() if isinstance(m, FusedConv))
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


def test_fused_conv_survives_copy_pickle_and_state_dict() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    fused = FusedConv(conv, Activation("relu"), (2, 3, 9, 9), source="conv")
    x = torch.randn(2, 3, 9, 9)
    expected = torch.relu(conv(x))
    torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-4)
    for twin in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):
        torch.testing.assert_close(twin(x), expected, atol=1e-5, rtol=1e-4)
    other = nn.Conv2d(3, 8, 3, padding=1)
    fused.load_state_dict({"weight": other.weight.detach(), "bias": other.bias.detach()})
    torch.testing.assert_close(fused(x), torch.relu(other(x)), atol=1e-5, rtol=1e-4)
    assert set(fused.state_dict()) == {"weight", "bias"}


def test_fused_conv_refuses_what_onednn_cannot_run() -> None:
    with pytest.raises(ValueError, match="Conv2d with numeric zero padding"):
        FusedConv(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), None, (1, 3, 8, 8))
    with pytest.raises(ValueError, match="only for ReLU"):
        FusedConv(nn.Conv2d(3, 4, 3), Activation("tanh"), (1, 3, 8, 8), residual=True)
