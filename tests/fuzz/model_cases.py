"""Generated tampered model files: seeded edits of files ``prunekit.save`` wrote.

Three originals (a dense MLP, a bitmask-compressed CNN, a CSR/fp16 model with residual adds,
concatenation and ``view(x.size(0), -1)``) are saved by the prunekit under test, then edited:

- ``crafted``: an architecture written by an attacker, saved *with a valid checksum* (the file
  an attacker would ship) — exploit graphs that reach ``exec`` through ``__globals__``, calls of
  ``eval``/``os.system``, dunder paths, random JSON in any field, deep nesting, bad tags. These
  may load only as an ordinary allowlisted model, and must never run code.
- ``edited``: the same edits made in place, without fixing the checksum — must be refused.
- ``metadata``: storage keys renamed, dropped or given other versions; index entries with other
  shapes, dtypes, layouts, counts and codecs — must be refused.
- ``bytes``: truncations and overwritten payload bytes — must be refused.
- ``bomb``: sizes that would allocate gigabytes — must be refused before allocating.

Only ``prunekit.save``, ``prunekit.load`` and ``prunekit.sparse.storage``'s
``save_state_dict``/``load_state_dict`` are used, so older prunekits face the same cases.
"""

from __future__ import annotations

import json
import math
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .recipe_cases import value_paths

ARCHITECTURE = "prunekit.architecture"
INDEX = "prunekit.storage.tensors"
STORAGE_KEYS = ("prunekit.storage.version", "prunekit.storage.tensors", "prunekit.storage.sha256")
DUNDERS = (
    "__globals__",
    "__class__",
    "__dict__",
    "__builtins__",
    "__init__",
    "__code__",
    "__func__",
    "__self__",
    "__module__",
    "__subclasses__",
    "__getattribute__",
)
METHODS = ("forward", "reset_parameters", "register_forward_hook", "apply", "state_dict",
           "__setattr__", "_apply", "extra_repr")  # fmt: skip
FUNCTIONS = ("builtins.eval", "builtins.exec", "os.system", "builtins.__import__", "torch.load",
             "torch.from_file", "builtins.open", "posix.system", "subprocess.run")  # fmt: skip
TAGS = ("tuple", "slice", "dict", "node", "device", "dtype", "float", "ellipsis", "layout",
        "memory_format", "pickle", "code")  # fmt: skip


class Residual(nn.Module):
    """A residual block with a skip add, concatenation, a parameter and a buffer, flattened by
    ``view(x.size(0), -1)``: the functional ops a graph description has to carry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.gain = nn.Parameter(torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("shift", torch.linspace(-1, 1, 6))
        self.head = nn.Linear(6 * 2 * 2, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.gain * torch.relu(self.norm(self.conv(x)))
        y = torch.cat([y, x.flip(1)], dim=1) + self.shift.view(1, 6, 1, 1)
        y = F.max_pool2d(y, 2)
        return self.head(y.view(y.size(0), -1)) * math.tau


def originals() -> dict[str, tuple[nn.Module, Tensor, dict[str, Any]]]:
    """name → (model, example input, save options); seeded, small."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 3)).eval()
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(start_dim=1), nn.Linear(4 * 6 * 6, 5)).eval()  # fmt: skip
    with torch.no_grad():
        for p in cnn.parameters():
            p[p.abs() < p.abs().flatten().quantile(0.7)] = 0
    residual = Residual().eval()
    return {
        "mlp": (mlp, torch.randn(2, 8), {"format": "dense"}),
        "cnn": (cnn, torch.randn(2, 1, 6, 6), {"format": "bitmask"}),
        "residual": (residual, torch.randn(2, 3, 4, 4),
                     {"format": "csr", "values_dtype": torch.float16}),
    }  # fmt: skip


@dataclass(frozen=True)
class ModelCase:
    """One file to hand to ``prunekit.load``; ``expect`` is ``reject`` or ``either``."""

    name: str
    category: str
    original: str
    data: bytes
    expect: str


def read_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def write_safetensors(header: dict[str, Any], payload: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + payload


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**31, 2**64, 10**30, 7])
    if kind == 2:
        return rng.choice([0.5, -1e308, 1e-300, 3.0])
    if kind == 3:
        return rng.choice(["", "x", "__class__", "0.forward", "torch.nn.Linear", "a" * 500,
                           "node", "cpu", "float16", "\x00", "é"])  # fmt: skip
    if kind == 4:
        return {rng.choice(TAGS): rng.choice(["x", 1, [], None, {}])}
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["op", "name", "target", "args", "kwargs", "tuple", "type", "config", "x"]):
            _random_json(rng, depth + 1) for _ in range(rng.randint(1, 3))}  # fmt: skip


def _node(op: str, name: str, target: Any, *args: Any) -> dict[str, Any]:
    return {"op": op, "name": name, "target": target, "args": {"tuple": list(args)},
            "kwargs": {"dict": {}}}  # fmt: skip


def _exploit(rng: random.Random, arch: dict[str, Any], canary: str) -> None:
    """Graphs that try to run code: the issue's exec chain (most often) and its relatives."""
    layers = sorted(arch["modules"]) or ["0"]
    resettable = [k for k in layers if arch["modules"][k]["type"].split(".")[-1].startswith(
        ("Linear", "Conv", "BatchNorm"))] or layers  # fmt: skip
    layer, other = rng.choice(resettable), rng.choice(layers)
    code = f"open({canary!r}, 'w').write('ran')"
    placeholder = arch["graph"][0]
    kind = rng.choice([0, 0, 0, 1, 2, 3, 4])
    body: list[dict[str, Any]]
    if kind == 0:  # the reported exploit: exec from a layer method's globals, stored as forward
        body = [
            _node("get_attr", "g", f"{layer}.reset_parameters.__globals__"),
            _node("call_function", "b", "operator.getitem", {"node": "g"}, "__builtins__"),
            _node("call_function", "e", "operator.getitem", {"node": "b"}, "exec"),
            _node("call_module", "s", f"{other}.__setattr__", "forward", {"node": "e"}),
            _node("call_module", "r", other, code),
        ]
    elif kind == 1:
        target = rng.choice(FUNCTIONS)
        argument = f"__import__('os').system('touch {canary}')" if "eval" in target else code
        body = [_node("call_function", "r", target, argument)]
    elif kind == 2:
        path = ".".join([layer, *rng.sample(METHODS, rng.randint(0, 2)),
                         *rng.sample(DUNDERS, rng.randint(1, 3))])  # fmt: skip
        body = [_node(rng.choice(["get_attr", "call_module"]), "r", path, code)]
    elif kind == 3:
        body = [_node("call_method", "r", rng.choice(["__reduce_ex__", "__class__", "apply_",
                                                      "numpy", "__setattr__", "map_"]),
                      {"node": placeholder["name"]}, code)]  # fmt: skip
    else:
        body = [_node("call_module", "r", f"{layer}.{rng.choice(METHODS)}", code)]
    arch["graph"][1:1] = body


def _deep(rng: random.Random, arch: dict[str, Any]) -> None:
    """Nesting 40 to 5,000 levels deep (written as text by :func:`to_text`: Python's own JSON
    encoder cannot write it either)."""
    target = rng.choice([n for n in arch["graph"] if n["op"] != "placeholder"])
    target["args"] = {"tuple": [f"__deep_{rng.randint(40, 5000)}_{rng.randrange(2**16)}__"]}


def to_text(arch: Any) -> str:
    """``json.dumps``, with :func:`_deep`'s markers expanded into the nesting they stand for."""

    def nested(match: re.Match[str]) -> str:
        rng = random.Random(int(match[2]))
        opens = [rng.choice(['{"tuple": [', "["]) for _ in range(int(match[1]))]
        closes = ["]}" if o.startswith("{") else "]" for o in reversed(opens)]
        return "".join(opens) + "1" + "".join(closes)

    return re.sub(r'"__deep_(\d+)_(\d+)__"', nested, json.dumps(arch))


def _bad_tag(rng: random.Random, arch: dict[str, Any]) -> None:
    node = rng.choice([n for n in arch["graph"] if n["op"] != "placeholder"])
    node["args"] = {"tuple": [{rng.choice(TAGS): _random_json(rng)}]}


def _replace_subtree(rng: random.Random, arch: dict[str, Any]) -> None:
    path = rng.choice(value_paths(arch))
    parent = arch
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = _random_json(rng)


ARCHITECTURE_EDITS: dict[str, Callable[..., None]] = {
    "subtree": _replace_subtree, "deep": _deep, "bad_tag": _bad_tag,
}  # fmt: skip


def _crafted(rng, name, data, canary, resign, count) -> list[ModelCase]:
    header, _ = read_safetensors(data)
    cases = []
    for index in range(count):
        arch = json.loads(header["__metadata__"][ARCHITECTURE])
        kind = ("exploit", "subtree", "deep", "bad_tag", "shape")[index % 5]
        expect = "reject" if kind == "exploit" else "either"
        if kind == "exploit":
            _exploit(rng, arch, canary)
        elif kind == "shape":
            arch = rng.choice([[], "prunekit.architecture", 7, None, True, [arch]])
        else:
            ARCHITECTURE_EDITS[kind](rng, arch)
        cases.append(ModelCase(f"{name}/crafted-{kind}#{index}", "crafted", name,
                               resign(data, to_text(arch)), expect))  # fmt: skip
    return cases


def _edited(rng, name, data, count) -> list[ModelCase]:
    header, payload = read_safetensors(data)
    cases = []
    for index in range(count):
        arch = json.loads(header["__metadata__"][ARCHITECTURE])
        before = json.dumps(arch)
        while json.dumps(arch) == before:
            _replace_subtree(rng, arch)
        edited = json.loads(json.dumps(header))
        edited["__metadata__"][ARCHITECTURE] = json.dumps(arch)
        cases.append(ModelCase(f"{name}/edited#{index}", "edited", name,
                               write_safetensors(edited, payload), "reject"))  # fmt: skip
    return cases


def _metadata(rng, name, data, count) -> list[ModelCase]:
    header, payload = read_safetensors(data)
    cases = []
    for index in range(count):
        edited = json.loads(json.dumps(header))
        meta = edited["__metadata__"]
        kind = ("key", "version", "entry", "part")[index % 4]
        if kind == "key":
            key = rng.choice(STORAGE_KEYS)
            value = meta.pop(key)
            if rng.random() < 0.6:  # a flipped letter in the key's name, or a lookalike
                meta[
                    key.replace(
                        rng.choice(["storage", "version", "sha256", "tensors"]),
                        rng.choice(["st0rage", "versi0n", "sha265", "tensor"]),
                    )
                ] = value
        elif kind == "version":
            meta["prunekit.storage.version"] = rng.choice(["0", "3", "1.0", "", "2 ", "-1"])
        else:
            index_ = json.loads(meta[INDEX])
            tensor = rng.choice(sorted(index_))
            entry = index_[tensor]
            if kind == "entry":
                field = rng.choice(["shape", "dtype", "stored_dtype", "layout", "parts", "nnz"])
                entry[field] = rng.choice([
                    [2**31, 2**31], [0], [-1], "cpu", "float64", "bool", "csr", "bitmask", {},
                    [e * 2 for e in entry.get("shape", [1])], None, _random_json(rng),
                ])  # fmt: skip
            elif isinstance(entry.get("parts"), dict) and entry["parts"]:
                info = entry["parts"][rng.choice(sorted(entry["parts"]))]
                info[rng.choice(["count", "itemsize", "codec"])] = rng.choice(
                    [10**9, 3, 0, -1, "lz4", "raw", "deflate-shuffle", None, 2**62]
                )
            else:
                index_[tensor] = _random_json(rng)
            meta[INDEX] = json.dumps(index_)
        cases.append(ModelCase(f"{name}/metadata-{kind}#{index}", "metadata", name,
                               write_safetensors(edited, payload), "reject"))  # fmt: skip
    return cases


def _bytes(rng, name, data, count) -> list[ModelCase]:
    header_end = 8 + int.from_bytes(data[:8], "little")
    cases = []
    for index in range(count):
        if index % 2:
            cut = rng.randrange(1, len(data))
            cases.append(
                ModelCase(f"{name}/truncated#{index}", "bytes", name, data[:cut], "reject")
            )
        else:
            damaged = bytearray(data)
            spot = rng.randrange(header_end, len(data))
            damaged[spot] = (damaged[spot] + rng.randrange(1, 256)) % 256
            cases.append(
                ModelCase(f"{name}/payload#{index}", "bytes", name, bytes(damaged), "reject")
            )
    return cases


def bombs(save_small: Callable[[], bytes], seed: int = 0) -> list[ModelCase]:
    """Weight files whose declared sizes would allocate gigabytes from kilobytes (the issue:
    68 KB → 2.2 GB RSS before the checksum refused it), for ``load_state_dict``, the path that
    decodes. ``save_small`` gives a bitmask file of one tensor ``w`` of 64 floats, written by
    the prunekit under test."""
    rng = random.Random(seed)
    header, _ = read_safetensors(save_small())
    cases = []
    for numel in (2**27, 2**28, 2**29):
        mask = zlib.compress(bytes((numel + 7) // 8), 9)  # LZ77: ~1000:1 on a zero run
        edited = json.loads(json.dumps(header))
        meta = edited["__metadata__"]
        index = json.loads(meta[INDEX])
        entry = index["w"]
        entry.update(layout="bitmask", shape=[numel], nnz=0)
        entry["parts"] = {"mask": {"codec": "deflate-shuffle", "itemsize": 1,
                                   "count": (numel + 7) // 8},
                          "values": {"codec": "raw", "itemsize": 4, "count": 0}}  # fmt: skip
        meta[INDEX] = json.dumps(index)
        tensors = {"w::mask": mask, "w::values": b""}
        offset, described, payload = 0, {}, b""
        for key, blob in tensors.items():
            described[key] = {"dtype": "U8", "shape": [len(blob)],
                              "data_offsets": [offset, offset + len(blob)]}  # fmt: skip
            offset += len(blob)
            payload += blob
        new_header = {"__metadata__": meta, **described}
        cases.append(ModelCase(f"bomb-bitmask-{numel}", "bomb", "small",
                               write_safetensors(new_header, payload), "reject"))  # fmt: skip
    for cols in (2**30, 2**34):
        edited = json.loads(json.dumps(header))
        index = json.loads(edited["__metadata__"][INDEX])
        index["w"]["shape"] = [rng.choice([1, 2]), cols]
        edited["__metadata__"][INDEX] = json.dumps(index)
        cases.append(ModelCase(f"bomb-shape-{cols}", "bomb", "small",
                               write_safetensors(edited, read_safetensors(save_small())[1]),
                               "reject"))  # fmt: skip
    return cases


def resigner(folder: Path) -> Callable[[bytes, str], bytes]:
    """``resign(file, architecture)``: the file's tensors saved again, *with a valid checksum*,
    beside another architecture — what an attacker who writes a file from scratch ships."""
    from prunekit.sparse.storage import load_state_dict, save_state_dict

    def resign(data: bytes, architecture: str) -> bytes:
        source, target = folder / "resign-in.safetensors", folder / "resign-out.safetensors"
        source.write_bytes(data)
        save_state_dict(load_state_dict(source), target, format="dense",
                        metadata={ARCHITECTURE: architecture})  # fmt: skip
        return target.read_bytes()

    return resign


def tampered_files(
    saved: dict[str, bytes],
    resign: Callable[[bytes, str], bytes],
    canary: Path,
    seed: int = 0,
    scale: float = 1.0,
) -> list[ModelCase]:
    """All generated cases for the ``saved`` originals (name → file bytes)."""
    rng = random.Random(seed)

    def n(base: int) -> int:
        return max(1, round(base * scale))

    cases: list[ModelCase] = []
    for name, data in saved.items():
        cases += _crafted(rng, name, data, str(canary), resign, n(30))
        cases += _edited(rng, name, data, n(12))
        cases += _metadata(rng, name, data, n(16))
        cases += _bytes(rng, name, data, n(6))
    return cases


def header_bit_flips(data: bytes, count: int, seed: int = 0) -> list[bytes]:
    """``count`` copies of ``data`` with one random bit of the safetensors header flipped."""
    rng = random.Random(seed)
    header_end = 8 + int.from_bytes(data[:8], "little")
    flipped = []
    for _ in range(count):
        copy = bytearray(data)
        bit = rng.randrange(header_end * 8)
        copy[bit // 8] ^= 1 << (bit % 8)
        flipped.append(bytes(copy))
    return flipped


def reset_peak_rss() -> None:
    """Start measuring the peak RSS afresh (Linux: ``/proc/self/clear_refs``; else a no-op)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss() -> int:
    """Bytes of the highest RSS since :func:`reset_peak_rss` (``VmHWM``), 0 where unknown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "0 0 kB")
    return int(line.split()[1]) * 1024
