from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.activations import Entmax15, Sparsemax
from prunekit.export.allowlist import ArchitectureError
from prunekit.export.architecture import describe, rebuild, trace


def _round_trip(model: nn.Module) -> nn.Module:
    """Describe, pass through JSON text (as a file would), rebuild with the traced weights."""
    traced = trace(model)
    description = json.loads(json.dumps(describe(traced)))
    return rebuild(description, traced.state_dict())


class Functional(nn.Module):
    """Residual add, concat, slicing, view(x.size(0), -1), getattr(shape), math, a dtype kwarg."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.register_buffer("offset", torch.randn(4))
        self.fc = nn.Linear(8 * 2 * 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv(x)) * self.scale + self.offset.view(1, -1, 1, 1)
        y = torch.cat([y, y[:, ::2], x[..., :, :]], dim=1) / math.sqrt(x.size(1))
        y = F.adaptive_avg_pool2d(y, 2).to(dtype=torch.float32)
        return self.fc(y.view(y.size(0), -1)) + y.shape[0]


def test_functional_model_round_trips_exactly() -> None:
    model = Functional().eval()
    rebuilt = _round_trip(model)
    x = torch.randn(3, 2, 6, 6)
    assert torch.equal(rebuilt(x), model(x))
    assert sorted(rebuilt.state_dict()) == sorted(model.state_dict())
    assert isinstance(rebuilt.get_parameter("scale"), nn.Parameter)
    assert "offset" in dict(rebuilt.named_buffers())


def test_tied_weights_default_arguments_and_structured_outputs() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

        def forward(self, x: Tensor, scale: float = 2.0) -> dict:
            y = self.b(self.a(x)) * scale
            return {"y": y, "pair": (y, x)}

    model = Tied().eval()
    traced = trace(model)
    description = json.loads(json.dumps(describe(traced)))
    assert description["tied"] == {"b.weight": "a.weight"}
    state = {k: v for k, v in traced.state_dict().items() if k != "b.weight"}
    rebuilt = rebuild(description, state)
    assert rebuilt.a.weight is rebuilt.b.weight
    x = torch.randn(2, 4)
    out, expected = rebuilt(x, 3.0), model(x, 3.0)
    assert torch.equal(out["y"], expected["y"]) and isinstance(out["pair"], tuple)
    assert torch.equal(rebuilt(x)["y"], model(x)["y"])


def test_layer_config_records_pruned_shapes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, bias=False), nn.BatchNorm2d(5, eps=1e-3))
    modules = describe(trace(model))["modules"]
    assert modules["0"]["config"]["out_channels"] == 5
    assert modules["0"]["config"]["bias"] is False
    assert modules["0"]["config"]["stride"] == {"tuple": [2, 2]}
    assert modules["1"]["config"]["eps"] == 1e-3


def test_weights_that_disagree_with_the_architecture_are_refused() -> None:
    description = describe(trace(nn.Sequential(nn.Linear(4, 3))))
    with pytest.raises(ArchitectureError, match="size mismatch"):
        rebuild(description, nn.Sequential(nn.Linear(4, 5)).state_dict())
    with pytest.raises(ArchitectureError, match="Missing key"):
        rebuild(description, {"0.weight": torch.zeros(3, 4)})


LAYERS = [
    (nn.Conv1d(3, 4, 3, padding="same", padding_mode="reflect"), (2, 3, 9)),
    (nn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1, groups=1), (2, 3, 5, 5)),
    (nn.Conv2d(4, 4, 3, groups=4, dilation=2), (1, 4, 9, 9)),
    (nn.GroupNorm(2, 4, affine=False), (2, 4, 3, 3)),
    (nn.LayerNorm(6, bias=False), (2, 6)),
    (nn.BatchNorm1d(6, momentum=None), (4, 6)),
    (nn.GRU(5, 7, num_layers=2, batch_first=True), (2, 4, 5)),
    (nn.LSTM(5, 6, bidirectional=True, proj_size=3), (4, 2, 5)),
    (nn.PReLU(3), (2, 3, 4)),
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (1, 2, 3, 3)),
    (nn.PixelShuffle(2), (1, 8, 3, 3)),
    (nn.ZeroPad2d((1, 0, 2, 0)), (1, 1, 3, 3)),
    (nn.AvgPool2d(3, stride=2, ceil_mode=True, count_include_pad=False), (1, 2, 8, 8)),
    (nn.AdaptiveMaxPool2d((2, 3)), (1, 2, 7, 7)),
    (nn.LeakyReLU(0.3), (2, 5)),
    (nn.GELU(approximate="tanh"), (2, 5)),
    (nn.Hardtanh(-0.5, 0.5), (2, 5)),
    (nn.Softplus(beta=2.0, threshold=5.0), (2, 5)),
    (nn.LogSoftmax(dim=0), (3, 5)),
    (nn.Unflatten(1, (2, 3)), (2, 6)),
    (Sparsemax(dim=1), (3, 5)),
    (Entmax15(dim=-1), (3, 5)),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=[type(m).__name__ for m, _ in LAYERS])
def test_allowlisted_layers_rebuild_with_their_configuration(
    layer: nn.Module, shape: tuple[int, ...]
) -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: Tensor) -> Tensor:
            out = self.layer(x)
            return out[0] if isinstance(self.layer, nn.RNNBase) else out

    model = Wrapper().eval()
    rebuilt = _round_trip(model)
    assert type(rebuilt.layer) is type(layer)
    assert repr(rebuilt.layer) == repr(layer)
    x = torch.randn(shape)
    assert torch.equal(rebuilt(x), model(x))


def test_embedding_and_multihead_attention() -> None:
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(11, 8, padding_idx=0)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True)

        def forward(self, tokens: Tensor) -> Tensor:
            x = self.embed(tokens)
            return self.attn(x, x, x, need_weights=False)[0]

    model = Encoder().eval()
    rebuilt = _round_trip(model)
    tokens = torch.randint(0, 11, (2, 5))
    assert torch.equal(rebuilt(tokens), model(tokens))
    assert rebuilt.attn.bias_k is not None and rebuilt.embed.padding_idx == 0


def test_subclass_with_its_own_forward_is_traced_not_saved_as_its_base() -> None:
    class ScaledLinear(nn.Linear):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) * 2

    model = nn.Sequential(ScaledLinear(3, 2)).eval()
    rebuilt = _round_trip(model)
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), model(x))
    assert not any(type(m) is nn.Linear for m in rebuilt.modules())


def test_training_flags_are_restored() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
    model[1].train()
    rebuilt = _round_trip(model)
    assert not rebuilt.training and not rebuilt.get_submodule("0").training
    assert rebuilt.get_submodule("1").training


def test_untraceable_module_is_named() -> None:
    class DataDependent(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x if x.sum() > 0 else -x

    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(DataDependent()))
    with pytest.raises(ArchitectureError, match=r"'1\.0' \(.*DataDependent\).*traceable"):
        trace(model)


def _linear_description() -> dict:
    return describe(trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"op": "call_function", "target": "builtins.eval"}, "not in prunekit's allowlist"),
        ({"op": "call_function", "target": "torch.load"}, "not in prunekit's allowlist"),
        ({"op": "call_function", "target": "torch.from_file"}, "not in prunekit's allowlist"),
        ({"op": "call_method", "target": "numpy"}, "not an allowlisted torch.Tensor method"),
        ({"op": "call_method", "target": "apply_"}, "not an allowlisted torch.Tensor method"),
        ({"op": "call_method", "target": "__reduce_ex__"}, "not an allowlisted"),
        ({"name": "x; import os"}, "not a valid Python identifier"),
        ({"name": "self"}, "shadow a name"),
        ({"target": '0"); __import__("os'}, "not a plain layer or tensor name"),
        ({"op": "exec"}, "no valid op"),
        ({"args": {"tuple": [{"node": "later"}]}}, "before it is defined"),
        ({"kwargs": {"dict": {"a=1, b": 2}}}, "not a valid Python identifier"),
        ({"args": {"tuple": [{"pickle": "x"}]}}, "unknown tag"),
    ],
)
def test_unsafe_or_broken_graphs_are_refused(change: dict, message: str) -> None:
    description = _linear_description()
    description["graph"][1].update(change)  # the first call_module node
    with pytest.raises(ArchitectureError, match=message):
        rebuild(description, nn.Sequential(nn.Linear(2, 2)).state_dict())


def test_getattr_only_reads_tensor_properties() -> None:
    description = _linear_description()
    description["graph"][1].update(
        op="call_function",
        target="builtins.getattr",
        args={"tuple": [{"node": "input_1"}, "__class__"]},
    )
    with pytest.raises(ArchitectureError, match="tensor properties"):
        rebuild(description, nn.Sequential(nn.Linear(2, 2)).state_dict())


def test_unknown_module_type_is_refused_with_the_fix() -> None:
    description = _linear_description()
    description["modules"]["0"]["type"] = "torch.nn.TransformerEncoderLayer"
    with pytest.raises(ArchitectureError, match="TransformerEncoderLayer.*register_leaf_module"):
        rebuild(description, {})
    description["modules"]["0"]["type"] = "os.system"
    with pytest.raises(ArchitectureError, match="'os.system' is not in prunekit's allowlist"):
        rebuild(description, {})


def test_unexpected_layer_arguments_are_refused() -> None:
    description = _linear_description()
    description["modules"]["0"]["config"]["device"] = "cuda"
    with pytest.raises(ArchitectureError, match=r"unexpected arguments \['device'\]"):
        rebuild(description, nn.Sequential(nn.Linear(2, 2)).state_dict())


def test_other_format_versions_are_refused() -> None:
    description = _linear_description()
    description["version"] = 99
    with pytest.raises(ArchitectureError, match="version 99"):
        rebuild(description, {})
