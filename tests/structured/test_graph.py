"""Every coupling kind: the right slices move together, and removing zeroed units is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.structured.graph import build_graph
from prunekit.structured.site import UnsupportedOpError


def _units(graph, module: str, param: str = "weight", dim: int = 0) -> np.ndarray:
    member = next(
        m for m in graph.members if (m.module, m.param, m.dim) == (module, param, dim)
    )
    return graph.units_of(member.ids)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_conv_bn_next_conv_share_units() -> None:
    g = build_graph(Residual(), torch.zeros(1, 3, 8, 8))
    conv1 = _units(g, "conv1")
    assert (conv1 >= 0).all()
    np.testing.assert_array_equal(_units(g, "bn1"), conv1)
    np.testing.assert_array_equal(_units(g, "bn1", "running_mean"), conv1)
    np.testing.assert_array_equal(_units(g, "conv2", dim=1), conv1)


def test_residual_add_merges_branches_and_shortcut() -> None:
    g = build_graph(Residual(), torch.zeros(1, 3, 8, 8))
    stem, conv2 = _units(g, "stem"), _units(g, "conv2")
    np.testing.assert_array_equal(stem, conv2)
    np.testing.assert_array_equal(_units(g, "head", dim=1), stem)
    group = g.group_of("stem")
    assert group is not None and set(group.modules) == {"stem", "conv2"}
    assert group.size == 8


def test_model_output_and_input_are_pinned() -> None:
    g = build_graph(Residual(), torch.zeros(1, 3, 8, 8))
    assert (_units(g, "head") == -1).all()
    assert (_units(g, "stem", dim=1) == -1).all()


def test_residual_exact(exact_removal) -> None:
    before, after, _ = exact_removal(Residual(), torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(13, 5, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(torch.cat([self.a(x), x, self.b(x)], dim=1))


def test_cat_offsets() -> None:
    g = build_graph(Concat(), torch.zeros(1, 3, 4, 4))
    consumer = _units(g, "c", dim=1)
    np.testing.assert_array_equal(consumer[:4], _units(g, "a"))
    assert (consumer[4:7] == -1).all()
    np.testing.assert_array_equal(consumer[7:], _units(g, "b"))
    assert len(g.groups) == 2


def test_cat_exact(exact_removal) -> None:
    before, after, _ = exact_removal(Concat(), torch.randn(2, 3, 4, 4), fraction=0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


class Chunked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return self.left(a) + self.right(b)


def test_chunk_couples_the_halves(exact_removal) -> None:
    g = build_graph(Chunked(), torch.zeros(1, 3, 4, 4))
    conv = _units(g, "conv")
    np.testing.assert_array_equal(conv[:4], conv[4:])
    before, after, _ = exact_removal(Chunked(), torch.randn(2, 3, 4, 4), fraction=0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand, depthwise (multiplier 2), project, plus a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(4, 12, 1)
        self.bn = nn.BatchNorm2d(12)
        self.depthwise = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.grouped = nn.Conv2d(24, 8, 3, padding=1, groups=4)
        self.project = nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.depthwise(F.relu6(self.bn(self.expand(x))))
        return x + self.project(F.relu(self.grouped(y)))


def test_depthwise_carries_expand_units() -> None:
    g = build_graph(InvertedResidual(), torch.zeros(1, 4, 6, 6))
    expand = _units(g, "expand")
    np.testing.assert_array_equal(_units(g, "depthwise"), np.repeat(expand, 2))
    np.testing.assert_array_equal(_units(g, "bn"), expand)


def test_grouped_conv_prunes_whole_groups(exact_removal) -> None:
    g = build_graph(InvertedResidual(), torch.zeros(1, 4, 6, 6))
    grouped_out = _units(g, "grouped")
    assert len(set(grouped_out.tolist())) == 4  # one unit per group
    before, after, graph = exact_removal(InvertedResidual(), torch.randn(2, 4, 6, 6), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    model = graph.model
    assert model.grouped.groups * (model.grouped.in_channels // model.grouped.groups) == (
        model.grouped.in_channels
    )
    assert model.depthwise.groups == model.depthwise.in_channels


class FlattenHead(nn.Module):
    def __init__(self, functional_view: bool) -> None:
        super().__init__()
        self.functional_view = functional_view
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc1 = nn.Linear(3 * 2 * 2, 7)
        self.fc2 = nn.Linear(7, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(torch.relu(self.conv(x)), 2)
        x = x.view(x.size(0), -1) if self.functional_view else torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


@pytest.mark.parametrize("functional_view", [True, False])
def test_flatten_linear_blocks(functional_view: bool, exact_removal) -> None:
    g = build_graph(FlattenHead(functional_view), torch.zeros(1, 1, 6, 6))
    np.testing.assert_array_equal(_units(g, "fc1", dim=1), np.repeat(_units(g, "conv"), 4))
    np.testing.assert_array_equal(_units(g, "fc2", dim=1), _units(g, "fc1"))
    before, after, graph = exact_removal(FlattenHead(functional_view), torch.randn(2, 1, 6, 6))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert graph.model.fc1.in_features == graph.model.conv.out_channels * 4


class LiteralView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(12, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).view(-1, 12))


def test_literal_view_size_pins_the_channels() -> None:
    g = build_graph(LiteralView(), torch.zeros(1, 1, 4, 4))
    assert g.num_units == 0


class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 1)
        self.gn = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 3, 1)
        self.fc = nn.Linear(3, 6)
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.gn(self.conv(x))).mean(dim=(2, 3))
        return self.out(self.ln(self.fc(y)))


def test_group_norm_and_layer_norm_follow_their_channels() -> None:
    model = Norms()
    g = build_graph(model, torch.zeros(1, 2, 3, 3))
    conv = _units(g, "conv")
    np.testing.assert_array_equal(conv[0::2], conv[1::2])  # GroupNorm: 2 channels per unit
    np.testing.assert_array_equal(_units(g, "ln"), _units(g, "fc"))
    remove = np.zeros(g.num_units, dtype=bool)
    remove[conv[0]] = True
    remove[_units(g, "fc")[:2]] = True
    from prunekit.structured.rewrite import remove_units

    remove_units(g, remove, torch.zeros(1, 2, 3, 3))
    assert (model.gn.num_groups, model.gn.num_channels) == (3, 6)
    assert model.ln.normalized_shape == (4,) and model.out.in_features == 4


class Recurrent(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], bidirectional: bool) -> None:
        super().__init__()
        self.rnn = kind(5, 6, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(12 if bidirectional else 6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_hidden_units(kind, bidirectional, exact_removal) -> None:
    before, after, graph = exact_removal(Recurrent(kind, bidirectional), torch.randn(2, 4, 5), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    rnn = graph.model.rnn
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[kind]
    assert rnn.hidden_size == 3
    assert rnn.weight_hh_l1.shape == (gates * 3, 3)
    assert rnn.weight_ih_l1.shape == (gates * 3, 3 * (2 if bidirectional else 1))


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 12), nn.Linear(8, 12), nn.Linear(8, 12)
        self.out = nn.Linear(12, 8)

    def forward(self, x: Tensor) -> Tensor:
        def heads(t: Tensor) -> Tensor:
            return t.unflatten(-1, (-1, 3)).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.out(y.transpose(1, 2).flatten(2))


def test_attention_heads_are_units(exact_removal) -> None:
    g = build_graph(Heads(), torch.zeros(1, 5, 8))
    q = _units(g, "q")
    assert g.num_units == 4 and len(g.groups) == 1
    np.testing.assert_array_equal(q, np.repeat(q[::3], 3))
    np.testing.assert_array_equal(_units(g, "k"), q)
    np.testing.assert_array_equal(_units(g, "out", dim=1), q)
    before, after, graph = exact_removal(Heads(), torch.randn(2, 5, 8), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert graph.model.q.out_features == 6


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 6)
        self.c = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(F.relu(self.b(F.relu(self.b(F.relu(self.a(x)))))))


def test_layer_called_twice_is_one_coupled_layer(exact_removal) -> None:
    g = build_graph(Shared(), torch.zeros(1, 4))
    np.testing.assert_array_equal(_units(g, "b", dim=1), _units(g, "b", dim=0))
    before, after, _ = exact_removal(Shared(), torch.randn(3, 4), 0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


class Exotic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.mixer = nn.Sequential(nn.Conv2d(4, 4, 1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.head(torch.fft.fft2(self.mixer(y)).real)


def test_unsupported_op_names_op_module_and_ignore() -> None:
    with pytest.raises(UnsupportedOpError) as error:
        build_graph(Exotic(), torch.zeros(1, 3, 4, 4))
    message = str(error.value)
    assert "fft" in message and "mixer.0" in message and "ignore=['mixer.0']" in message


def test_ignore_unblocks_and_keeps_those_channels() -> None:
    g = build_graph(Exotic(), torch.zeros(1, 3, 4, 4), ignore=["mixer.0"])
    assert (_units(g, "mixer.0") == -1).all()
    assert (_units(g, "conv") >= 0).all()


def test_ignore_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="did you mean"):
        build_graph(Exotic(), torch.zeros(1, 3, 4, 4), ignore=["mixr"])


class DataDependent(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * 2 if x.sum() > 0 else x


class WithUntraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.odd = DataDependent()
        self.b = nn.Linear(6, 6)
        self.c = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(F.relu(self.b(self.odd(F.relu(self.a(x))))))


def test_untraceable_submodule_becomes_an_opaque_leaf() -> None:
    g = build_graph(WithUntraceable(), torch.zeros(1, 4))
    assert (_units(g, "a") == -1).all()
    assert (_units(g, "b") >= 0).all()


class PermuteMix(nn.Module):
    """Channels moved last for a Linear, a matmul contracting them, and a softmax over them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)
        self.mix = nn.Linear(6, 5)
        self.key = nn.Linear(5, 4)
        self.query = nn.Linear(5, 4)
        self.gate = nn.Linear(5, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.mix(self.conv(x).permute(0, 2, 3, 1).flatten(1, 2)))  # N×HW×5
        scores = self.query(h) @ self.key(h).transpose(1, 2)  # contracts the 4 key/query units
        g = torch.softmax(self.gate(h), dim=-1)  # softmax over the gate's 3 units: pinned
        return self.out(torch.stack([g, g], dim=0).sum(0)).mean(1) + scores.mean()


def test_permute_matmul_softmax_and_stack(exact_removal) -> None:
    g = build_graph(PermuteMix(), torch.zeros(1, 3, 2, 2))
    np.testing.assert_array_equal(_units(g, "mix", dim=1), _units(g, "conv"))
    np.testing.assert_array_equal(_units(g, "query"), _units(g, "key"))
    assert (_units(g, "query") >= 0).all()
    assert (_units(g, "gate") == -1).all()
    before, after, _ = exact_removal(PermuteMix(), torch.randn(2, 3, 2, 2), fraction=0.5)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.b.weight = self.a.weight
        self.c = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.c(F.relu(self.b(F.relu(self.a(x)))))


def test_tied_parameters_are_kept_whole() -> None:
    g = build_graph(Tied(), torch.zeros(1, 6))
    assert (_units(g, "a") == -1).all() and (_units(g, "b") == -1).all()
    assert (_units(g, "b", dim=1) == -1).all()
