from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

import prunekit
from prunekit.export.allowlist import ArchitectureError
from prunekit.masks import set_mask, strip
from prunekit.models import build_model
from prunekit.saving import ARCHITECTURE_KEY
from prunekit.sparse.storage import StorageError, load_state_dict, read_metadata, save_state_dict
from prunekit.structured import prune_channels

# A fresh interpreter that cannot import the zoo (nor this test module): it must rebuild each
# model from the file alone, and reports whether the outputs equal the saved expectations.
FRESH_LOADER = textwrap.dedent(
    """
    import json, sys
    sys.modules["prunekit.models"] = None  # any import of the zoo now fails
    import torch
    from safetensors.torch import load_file
    import prunekit

    results = {}
    for model_file in sys.argv[1:]:
        io = {k: v.clone() for k, v in load_file(model_file + ".io").items()}  # aligned
        model = prunekit.load(model_file)
        with torch.no_grad():
            out = model(io["input"])
        results[model_file] = {
            "equal": bool(torch.equal(out, io["expected"])),
            "max_diff": float((out - io["expected"]).abs().max()),
            "class": type(model).__module__,
        }
    json.dump(results, sys.stdout)
    """
)


def _save_case(model: nn.Module, x: Tensor, path: Path, **options: object) -> Path:
    model.eval()
    with torch.no_grad():
        expected = model(x)
    prunekit.save(model, path, **options)
    save_file({"input": x, "expected": expected.contiguous()}, str(path) + ".io")
    return path


def _load_fresh(paths: list[Path], cwd: Path) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_LOADER, *map(str, paths)],
        capture_output=True, text=True, cwd=cwd, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


ZOO = [
    ("lenet5", {}, (2, 1, 28, 28)),
    ("lenet300", {}, (2, 1, 28, 28)),
    ("vgg11", {"in_channels": 1}, (2, 1, 28, 28)),
    ("resnet20", {"in_channels": 1}, (2, 1, 28, 28)),
    ("resnet56", {}, (2, 3, 32, 32)),
    ("resnet18", {"num_classes": 10}, (1, 3, 64, 64)),
    ("resnet50", {"num_classes": 10}, (1, 3, 64, 64)),
    ("mobilenet_v2", {"num_classes": 10}, (1, 3, 64, 64)),
    ("autoencoder", {}, (2, 1, 28, 28)),
    ("lstm", {}, (2, 1, 28, 28)),
    ("tiny_transformer", {}, (2, 1, 28, 28)),
]


class Branchy(nn.Module):
    """A user's model: concat of two branches, residual add, own parameter and buffer, view."""

    def __init__(self, widths: tuple[int, int, int] = (8, 6, 5)) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = nn.Conv2d(1, a, 3, padding=1)
        self.bn = nn.BatchNorm2d(a)
        self.left = nn.Conv2d(a, b, 3, padding=1)
        self.right = nn.Conv2d(a, c, 1)
        self.merge = nn.Conv2d(b + c, a, 1)
        self.scale = nn.Parameter(torch.rand(1, a, 1, 1))
        self.register_buffer("offset", torch.randn(a))
        self.head = nn.Linear(a * 7 * 7, 10)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn(self.stem(x)))
        z = torch.cat([self.left(y), F.gelu(self.right(y))], dim=1)
        y = y + self.merge(z) * self.scale + self.offset.view(1, -1, 1, 1)
        y = F.max_pool2d(y, 4)
        return self.head(y.view(y.size(0), -1))[:, : x.shape[1] * 10]


def _shrink_first_block(model: nn.Module, keep: int) -> None:
    """Compact by hand: keep the first ``keep`` channels inside resnet20's layer1.0."""
    block = model.layer1[0]
    conv1, bn1, conv2 = block.conv1, block.bn1, block.conv2
    block.conv1 = nn.Conv2d(conv1.in_channels, keep, 3, padding=1, bias=False)
    block.bn1 = nn.BatchNorm2d(keep)
    block.conv2 = nn.Conv2d(keep, conv2.out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        block.conv1.weight.copy_(conv1.weight[:keep])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(block.bn1, name).copy_(getattr(bn1, name)[:keep])
        block.conv2.weight.copy_(conv2.weight[:, :keep])


@pytest.mark.slow
def test_every_zoo_and_user_model_loads_in_a_fresh_process(tmp_path: Path) -> None:
    paths = []
    for name, kwargs, shape in ZOO:
        model = build_model(name, **kwargs)
        paths.append(_save_case(model, torch.rand(shape), tmp_path / f"{name}.safetensors"))
    paths.append(_save_case(Branchy(), torch.rand(2, 1, 28, 28), tmp_path / "branchy.safetensors"))
    shrunk = Branchy(widths=(5, 3, 2))
    paths.append(_save_case(shrunk, torch.rand(2, 1, 28, 28), tmp_path / "shrunk.safetensors"))
    compacted = build_model("resnet20", in_channels=1)
    _shrink_first_block(compacted, keep=9)
    paths.append(_save_case(compacted, torch.rand(2, 1, 28, 28), tmp_path / "compact.safetensors"))
    for name, shape in (("resnet20", (2, 3, 32, 32)), ("mobilenet_v2", (1, 3, 64, 64))):
        pruned, x = build_model(name).eval(), torch.rand(shape)
        prune_channels(pruned, x, ratio=0.5)
        paths.append(_save_case(pruned, x, tmp_path / f"pruned_{name}.safetensors"))

    results = _load_fresh(paths, tmp_path)

    assert {Path(p).name for p in results} == {p.name for p in paths}
    for path, result in results.items():
        assert result["equal"], f"{path}: outputs differ by {result['max_diff']}"
        assert not result["class"].startswith(("prunekit.models", "tests", "test_"))


def test_compacted_model_keeps_its_smaller_shapes(tmp_path: Path) -> None:
    model = build_model("resnet20", in_channels=1).eval()
    _shrink_first_block(model, keep=9)
    loaded = prunekit.load(prunekit.save(model, tmp_path / "m.safetensors"))
    assert loaded.get_submodule("layer1.0.conv1").weight.shape == (9, 16, 3, 3)
    assert loaded.get_submodule("layer1.0.conv2").in_channels == 9
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training


def _sparse_mlp() -> nn.Module:
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.masked_fill_(torch.rand_like(layer.weight) < 0.9, 0.0)
    return model.eval()


def test_compressed_formats_round_trip_and_shrink_the_file(tmp_path: Path) -> None:
    model, x = _sparse_mlp(), torch.randn(4, 256)
    dense = prunekit.save(model, tmp_path / "dense.safetensors")
    sizes = {"dense": dense.stat().st_size}
    for fmt in ("bitmask", "csr"):
        path = prunekit.save(model, tmp_path / f"{fmt}.safetensors", format=fmt)
        sizes[fmt] = path.stat().st_size
        assert torch.equal(prunekit.load(path)(x), model(x))
    half = prunekit.save(model, tmp_path / "fp16.safetensors", format="bitmask",
                         values_dtype=torch.float16)  # fmt: skip
    loaded = prunekit.load(half)
    assert loaded.get_submodule("0").weight.dtype == torch.float32
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=1e-2)
    assert sizes["bitmask"] < 0.2 * sizes["dense"] and sizes["csr"] < 0.25 * sizes["dense"]
    assert half.stat().st_size < 0.7 * sizes["bitmask"]


def test_pickles_are_refused_unless_trusted(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 2)).eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(StorageError, match="pickle.*trust_pickle=True"):
        prunekit.load(path)
    trusted = prunekit.load(path, trust_pickle=True)
    x = torch.randn(2, 3)
    assert torch.equal(trusted(x), model(x))
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(StorageError, match="not a model"):
        prunekit.load(tmp_path / "state.pt", trust_pickle=True)


def test_onnx_files_point_to_onnxruntime(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch")
    with pytest.raises(StorageError, match="onnxruntime"):
        prunekit.load(path)


def test_truncated_and_corrupted_files_fail_clearly(tmp_path: Path) -> None:
    path = prunekit.save(_sparse_mlp(), tmp_path / "m.safetensors", format="bitmask")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError, match="truncated"):
        prunekit.load(tmp_path / "cut.safetensors")
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(StorageError, match="corrupted"):
        prunekit.load(tmp_path / "flip.safetensors")


def _rewrite_architecture(path: Path, edit: object, *, resign: bool) -> None:
    """Edit the architecture JSON; ``resign`` writes a whole new, correctly checksummed file
    (what an attacker who crafts a file does) instead of editing one in place."""
    metadata = read_metadata(path)
    architecture = json.loads(metadata[ARCHITECTURE_KEY])
    edit(architecture)
    text = json.dumps(architecture)
    if resign:
        state = load_state_dict(path)
        save_state_dict(state, path, format="dense", metadata={ARCHITECTURE_KEY: text})
    else:
        metadata[ARCHITECTURE_KEY] = text
        save_file(load_file(str(path)), str(path), metadata=metadata)


def _to_eval(architecture: dict) -> None:
    node = architecture["graph"][1]
    node.update(op="call_function", target="builtins.eval", args={"tuple": ["1"]})


def test_an_edited_architecture_cannot_smuggle_in_code(tmp_path: Path) -> None:
    path = prunekit.save(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), tmp_path / "m.safetensors")
    _rewrite_architecture(path, _to_eval, resign=True)
    with pytest.raises(ArchitectureError, match="'builtins.eval' is not in prunekit's allowlist"):
        prunekit.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: a["modules"]["0"].update(type="torch.nn.Flatten", config={}),
        lambda a: a["modules"].pop("1"),
        lambda a: a.update(training=not a["training"]),
    ],
)
def test_the_checksum_covers_the_architecture(tmp_path: Path, edit: object) -> None:
    """One bit of JSON used to turn Flatten(start_dim=1) into start_dim=0, or drop a layer."""
    path = prunekit.save(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), tmp_path / "m.safetensors")
    _rewrite_architecture(path, edit, resign=False)
    with pytest.raises(StorageError, match="checksum mismatch"):
        prunekit.load(path)


@pytest.mark.parametrize(
    "drop", ["prunekit.storage.version", "prunekit.storage.sha256", "prunekit.storage.tensors"]
)
def test_the_checksum_cannot_be_switched_off_by_removing_a_storage_key(
    tmp_path: Path, drop: str
) -> None:
    path = prunekit.save(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), tmp_path / "m.safetensors")
    metadata = read_metadata(path)
    metadata[drop.replace("storage", "st0rage")] = metadata.pop(drop)  # a flipped key name
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(StorageError):
        prunekit.load(path)


def test_weights_only_files_and_masked_models_are_explained(tmp_path: Path) -> None:
    state_only = save_state_dict({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    with pytest.raises(StorageError, match="weights only.*prunekit.save"):
        prunekit.load(state_only)
    model = nn.Sequential(nn.Linear(2, 2))
    set_mask(model[0], "weight", torch.tensor([[True, False], [False, True]]))
    with pytest.raises(ValueError, match=r"prunekit.masks.strip\(model\)"):
        prunekit.save(model, tmp_path / "masked.safetensors")
    loaded = prunekit.load(prunekit.save(strip(model), tmp_path / "stripped.safetensors"))
    assert int(torch.count_nonzero(loaded.get_submodule("0").weight)) == 2


def test_a_failed_save_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    class Untraceable(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x if x.sum() > 0 else -x

    path = prunekit.save(nn.Linear(2, 2), tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(ArchitectureError, match="Untraceable"):
        prunekit.save(Untraceable(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_import_prunekit_stays_light() -> None:
    code = "import sys, prunekit; assert 'torch' not in sys.modules; print(prunekit.__all__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "save" in done.stdout and "load" in done.stdout
