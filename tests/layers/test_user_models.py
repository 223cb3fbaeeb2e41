"""Models as users write them, not the zoo's: every claim prunekit makes must hold on each.

For each model: unstructured 80 % global pruning zeroes 80 % of exactly the weights it reports
on and leaves no weight matrix out; the zeros survive 5 steps of a plain loop (SGD with momentum,
Adam, AdamW with weight decay and gradient clipping, SGD under bf16 autocast);
structured pruning to half the MACs (counted right for RNNs, attention and ConvTranspose) gives
the outputs of the model with the same units zeroed; the result saves and loads in a fresh
process with equal outputs.

``python tests/layers/test_user_models.py`` prints the per-model table of those figures.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

import prunekit
from prunekit.evaluate import count_macs, prunable_sparsity
from prunekit.layers import skipped_weights
from prunekit.structured import explain, prune_channels
from prunekit.unstructured import prune_by_ratio

Inputs = tuple[Tensor, ...]


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class BiGRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 24, batch_first=True, bidirectional=True)
        self.head = nn.Linear(48, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gru(x)[0].mean(dim=1))


class ConvAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class SameConv(nn.Conv2d):
    """A user's Conv2d: 'same' padding and its own initialisation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2)
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")


class SubclassCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = SameConv(3, 16, 3), nn.BatchNorm2d(16)
        self.conv2 = SameConv(16, 32, 3, stride=2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class _Attention(nn.Module):
    """Token projection, q/k/v/out projections, a mean-pooled classifier: the shared frame."""

    def __init__(self, heads: int = 4, kv_heads: int = 4, dim: int = 32) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.inp = nn.Linear(6, dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, kv_heads * self.head_dim)
        self.v = nn.Linear(dim, kv_heads * self.head_dim)
        self.o = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 5)

    def classify(self, attended: Tensor) -> Tensor:
        return self.head(F.relu(self.o(attended)).mean(dim=1))


class ViewAttention(_Attention):
    """``view(B, T, self.num_heads, self.head_dim)``, explicit ``q @ kᵀ``, softmax, ``@ v``."""

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        b, t, _ = h.shape
        q = self.q(h).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.classify(out)


class PaddedSDPA(_Attention):
    """``scaled_dot_product_attention`` with a key padding mask, heads by ``unflatten``."""

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        q, k, v = (p(h).unflatten(-1, (-1, self.head_dim)).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.classify(out.transpose(1, 2).flatten(2))


class GroupedQueryAttention(_Attention):
    """8 query heads sharing 4 key/value heads (``enable_gqa``), causal."""

    def __init__(self) -> None:
        super().__init__(heads=8, kv_heads=4)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        b, t, _ = h.shape
        q = self.q(h).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.classify(out.transpose(1, 2).reshape(b, t, -1))


class MHANet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 32)
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        out, _ = self.attn(h, h, h)
        return self.head(F.relu(out).mean(dim=1))


class GroupedConv1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv1d(4, 16, 3), nn.BatchNorm1d(16)
        self.depthwise = nn.Conv1d(16, 16, 5, padding=2, groups=16)
        self.grouped = nn.Conv1d(16, 32, 3, groups=4)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.depthwise(F.relu(self.bn(self.stem(x)))))
        return self.fc(F.relu(self.grouped(x)).mean(dim=-1))


def _sequence() -> Inputs:
    return (torch.randn(4, 10, 8),)


def _tokens() -> Inputs:
    return (torch.randn(4, 8, 6),)


def _padded() -> Inputs:
    keep = torch.ones(4, 8, dtype=torch.bool)
    keep[0, 5:] = keep[2, 3:] = False
    return torch.randn(4, 8, 6), keep


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], Inputs]]] = {
    "lstm": (LSTMNet, _sequence),
    "bigru": (BiGRUNet, _sequence),
    "conv_autoencoder": (ConvAutoencoder, lambda: (torch.rand(4, 1, 16, 16),)),
    "conv2d_subclass": (SubclassCNN, lambda: (torch.randn(4, 3, 12, 12),)),
    "view_attention": (ViewAttention, _tokens),
    "sdpa_padding_mask": (PaddedSDPA, _padded),
    "gqa_attention": (GroupedQueryAttention, _tokens),
    "multihead_attention": (MHANet, _tokens),
    "conv1d_grouped": (GroupedConv1d, lambda: (torch.randn(4, 4, 32),)),
}


def _build(name: str) -> tuple[nn.Module, Inputs]:
    factory, inputs = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    with torch.no_grad():  # trained-looking BatchNorm statistics, so zeroing is a real test
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval(), inputs()


def _zeros(model: nn.Module) -> float:
    """Fraction of zeros over every weight matrix of the model (what 'really sparse' means)."""
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    return sum(int((p == 0).sum()) for p in matrices) / sum(p.numel() for p in matrices)


LOOPS: dict[str, tuple[Callable, float, bool]] = {
    "sgd-momentum": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 0.0, False),
    "adam": (lambda p: torch.optim.Adam(p, lr=0.01), 0.0, False),
    "adamw-decay-clip": (lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1), 0.5, False),
    "sgd-autocast": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 0.0, True),
}


def _train_steps(model: nn.Module, inputs: Inputs, loop: str, steps: int = 5) -> None:
    """A plain user loop: no prunekit call in it."""
    make, clip, autocast = LOOPS[loop]
    optimizer = make(model.parameters())
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(*inputs).float().square().mean()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    model.eval()


# torch's CPU LSTM has no bf16 kernel under autocast (oneDNN refuses it) and its GRU runs bf16
# ~50× slower: the recurrent models train in float32 loops only
_RECURRENT = ("lstm", "bigru")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unstructured_80_percent_is_real_and_holds_in_a_plain_loop(name: str) -> None:
    for loop in LOOPS:
        if loop == "sgd-autocast" and name in _RECURRENT:
            continue
        model, inputs = _build(name)
        assert skipped_weights(model) == {}  # every weight matrix is one prunekit prunes
        prune_by_ratio(model, 0.8)
        assert prunable_sparsity(model) == pytest.approx(0.8, abs=1e-3)
        assert _zeros(model) == pytest.approx(prunable_sparsity(model), abs=1e-9)
        before = [p.detach().clone() for p in model.parameters()]
        _train_steps(model, inputs, loop)
        assert _zeros(model) == pytest.approx(0.8, abs=1e-3), loop
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), loop


def _structured(name: str, zero_out: Callable) -> dict:
    """Zero the units prune_channels will remove, then remove them: outputs and MACs."""
    model, inputs = _build(name)
    dense_macs = count_macs(model, inputs)
    plan = explain(model, inputs, max_macs=0.5)
    zero_out(plan.graph, plan.remove)
    with torch.no_grad():
        reference = model(*inputs)
    report = prune_channels(model, inputs, max_macs=0.5)
    with torch.no_grad():
        output = model(*inputs)
    return {"model": model, "inputs": inputs, "reference": reference, "output": output,
            "dense_macs": dense_macs, "macs": count_macs(model, inputs), "report": report}


@pytest.fixture(scope="module")
def pruned(zero_out: Callable) -> dict[str, dict]:
    return {name: _structured(name, zero_out) for name in sorted(MODELS)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_structured_half_macs_equals_the_zeroed_model(name: str, pruned: dict) -> None:
    result = pruned[name]
    assert result["report"].removed > 0
    assert result["macs"] <= 0.55 * result["dense_macs"]
    torch.testing.assert_close(result["output"], result["reference"], atol=1e-5, rtol=1e-4)


_LOADER = """
import sys, torch, prunekit
from safetensors.torch import load_file
for path in sys.argv[1:]:
    tensors = load_file(path + ".io")
    inputs = [tensors[f"input{i}"] for i in range(len(tensors) - 1)]
    with torch.no_grad():
        output = prunekit.load(path)(*inputs)
    error = (output - tensors["output"]).abs().max().item()
    print(path, error)
    assert error <= 1e-5, (path, error)
"""


def test_pruned_models_load_in_a_fresh_process(pruned: dict, tmp_path: Path) -> None:
    paths = []
    for name, result in pruned.items():
        path = tmp_path / f"{name}.safetensors"
        prunekit.save(result["model"], path)
        tensors = {f"input{i}": t for i, t in enumerate(result["inputs"])}
        save_file({**tensors, "output": result["output"].contiguous()}, f"{path}.io")
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", _LOADER, *paths], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") == len(MODELS)


def per_model_table() -> str:
    """The closing table: reported vs real sparsity, MACs before/after, what stayed pinned."""
    header = ("| model | reported sparsity | real zeros | MACs dense | MACs pruned | fraction "
              "| max abs. diff. vs zeroed | pinned (kept units) |")
    lines = [header, "|" + "---|" * 8]
    for name in sorted(MODELS):
        model, _ = _build(name)
        prune_by_ratio(model, 0.8)
        reported, real = prunable_sparsity(model), _zeros(model)
        result = _structured(name, _zero_units())
        pinned = ", ".join(f"{p.module} {p.kept}/{p.size}" for p in result["report"].pinned)
        error = (result["output"] - result["reference"]).abs().max().item()
        lines.append(f"| {name} | {reported:.4f} | {real:.4f} | {result['dense_macs']:,} | "
                     f"{result['macs']:,} | {result['macs'] / result['dense_macs']:.3f} | "
                     f"{error:.1e} | {pinned} |")
    return "\n".join(lines)


def _zero_units() -> Callable:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import zero_units

    return zero_units


if __name__ == "__main__":
    print(per_model_table())
