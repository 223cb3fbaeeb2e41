"""Generated hostile and careless recipes: seeded mutations of valid recipes, and YAML grammars.

Every case says what a correct prunekit must do with it: ``reject`` (exit code 2, one line) or
``either`` (a mutation that may leave the recipe valid). Cases use only what every prunekit
version offers (the ``prunekit`` command), so ``benchmarks/fuzz.py`` can count the same cases
against older code. ``{dir}`` and ``{canary}`` in a case's text are filled in with its folder
and the file that code smuggled in by the case would create.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

import yaml

# Every key the recipe schema knows, anywhere: a generated typo must not land on one of them.
SCHEMA_KEYS = frozenset((
    "name", "seed", "data", "model", "train", "baseline", "variants", "measure", "test_fraction",
    "path", "options", "kwargs", "epochs", "lr", "batch_size", "optimizer", "momentum",
    "weight_decay", "loss", "regularizers", "prune", "distill", "distill_alpha", "temperature",
    "kind", "lam", "l2", "schedule", "initial_sparsity", "final_sparsity", "begin_step",
    "end_step", "power", "frequency", "criterion", "scope", "sparsity", "threshold", "n", "m",
    "rounds", "ratio", "macs_fraction", "max_layer_ratio", "round_to", "ignore", "start",
    "stages", "iterative", "structured", "load", "latency_batch", "repeats", "threads",
    "backends", "in_features", "hidden", "num_classes", "n_samples", "n_features",
))  # fmt: skip
SYNONYMS = {"lam": "lambda", "epochs": "epoch", "lr": "learning_rate", "stages": "steps",
            "batch_size": "batchsize", "final_sparsity": "target_sparsity", "kwargs": "args",
            "variants": "variant", "sparsity": "amount", "criterion": "criteria"}  # fmt: skip

BASE: dict[str, Any] = {
    "name": "fuzz", "seed": 0, "data": {"name": "digits", "test_fraction": 0.2},
    "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}},
    "train": {"epochs": 1, "lr": 0.01, "batch_size": 64, "optimizer": "adam"},
    "measure": {"repeats": 2},
    "variants": [
        {"name": "half", "stages": [{"prune": {"sparsity": 0.5}}, {"train": {"epochs": 1}}]},
        {"name": "l1", "stages": [{"train": {"epochs": 1, "regularizers": [
            {"kind": "l1", "lam": 0.0001}]}}]},
        {"name": "gradual", "stages": [{"train": {"epochs": 1, "prune": {"schedule": {
            "kind": "polynomial_decay", "initial_sparsity": 0.2, "final_sparsity": 0.8,
            "begin_step": 0, "end_step": 50, "frequency": 10}}}}]},
        {"name": "nm", "stages": [{"prune": {"n": 2, "m": 4}}]},
        {"name": "thin", "stages": [{"structured": {"ratio": 0.5, "round_to": 2}}]},
        {"name": "iter", "stages": [{"iterative": {"final_sparsity": 0.9, "rounds": 2}}]},
        {"name": "kd", "stages": [{"train": {"epochs": 1, "distill": True,
                                             "temperature": 2.0}}]},
    ],
}  # fmt: skip

OUT_OF_RANGE = {
    "sparsity": [1.0, 1.5, -0.1], "final_sparsity": [1.0, 2], "initial_sparsity": [-0.5],
    "lr": [0, -0.001], "epochs": [-1], "batch_size": [0, -5], "seed": [-1, 2**33, 2**70],
    "test_fraction": [0, 1, 1.5], "frequency": [0], "rounds": [0], "lam": [-1.0],
    "ratio": [1.0, -0.2], "temperature": [0.0], "repeats": [0], "round_to": [0], "n": [0],
    "end_step": [-5],
}  # fmt: skip
NON_FINITE = (".inf", "-.inf", ".nan")
CODE_SPECS = ("os:system", "subprocess:getoutput", "builtins:exec", "shutil:rmtree",
              "{dir}/evil.py:make", "{dir}/sub/../evil.py:make", "pty:spawn")  # fmt: skip
EVIL_FILE = "open({canary!r}, 'w').write('imported')\ndef make(**kw):\n    return None\n"
UNSAFE_NAMES = (
    ".",
    "..",
    "../escape",
    "a/b",
    "/abs",
    "..\\x",
    "CON",
    "nul",
    "report.json",
    "recipe.json",
    ".hidden",
    "",
    "x" * 200,
    "two words",
    "ümlaut",
    "-flag",
)


@dataclass(frozen=True)
class RecipeCase:
    """One recipe to feed to ``prunekit``; ``expect`` is ``reject`` or ``either``."""

    name: str
    category: str
    text: bytes
    expect: str
    command: tuple[str, ...] = ("validate",)
    trusted: bool = False
    files: dict[str, str] = _field(default_factory=dict)
    field: str | None = None
    """A key a clear refusal names (the misspelt key, the out-of-range field...)."""


def _dump(recipe: Any) -> bytes:
    return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).encode()


def value_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts/lists (the root excluded)."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()  # fmt: skip
    for key, child in children:
        found.append((*prefix, key))
        found += value_paths(child, (*prefix, key))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _copy() -> dict[str, Any]:
    return json.loads(json.dumps(BASE))


def _typo(rng: random.Random, key: str) -> str:
    if key in SYNONYMS and rng.random() < 0.3:
        return SYNONYMS[key]
    for _ in range(50):
        i = rng.randrange(len(key))
        letter = rng.choice(string.ascii_lowercase)
        candidate = rng.choice([
            key[:i] + key[i + 1:], key[:i] + key[i] + key[i:], key[:i] + letter + key[i + 1:],
            key[:i] + key[i + 1:i + 2] + key[i:i + 1] + key[i + 2:], key + "s", key.upper(),
        ])  # fmt: skip
        if candidate and candidate not in SCHEMA_KEYS:
            return candidate
    return key + "_x"


def _wrong_type(rng: random.Random, value: Any) -> Any:
    """A value of another kind than ``value`` that strict validation must refuse."""
    if isinstance(value, bool):
        options: list[Any] = [1, "yes", [True]]
    elif isinstance(value, int):
        options = [True, 2.5, "3", [value], {"value": value}]
    elif isinstance(value, float):
        options = [True, "0.1", [value], {"value": value}]
    elif isinstance(value, str):
        options = [7, ["x"], {"name": value}, False]
    elif isinstance(value, list):
        options = [{"a": 1}, "list", 3]
    else:
        options = [["x"], "mapping", 5]
    return rng.choice(options)


def _schema_cases(rng: random.Random, count: int) -> list[RecipeCase]:
    cases = []
    mutations = ("typo", "type", "range", "nonfinite", "missing", "inverted", "option",
                 "kwarg", "name", "duplicate")  # fmt: skip
    for index in range(count):
        kind = mutations[index % len(mutations)]
        recipe = _copy()
        text, named = None, None
        paths = [p for p in value_paths(recipe) if "kwargs" not in p]
        if kind == "typo":
            path = rng.choice([p for p in paths if isinstance(p[-1], str)])
            parent = _get(recipe, path[:-1])
            named = _typo(rng, path[-1])
            parent[named] = parent.pop(path[-1])
        elif kind == "type":
            path = rng.choice([p for p in paths if p[-1] != "options"])
            _get(recipe, path[:-1])[path[-1]] = _wrong_type(rng, _get(recipe, path))
            named = path[-1] if isinstance(path[-1], str) else None
        elif kind == "range":
            spots = [p for p in paths if p[-1] in OUT_OF_RANGE]
            path = rng.choice(spots)
            _get(recipe, path[:-1])[path[-1]] = rng.choice(OUT_OF_RANGE[path[-1]])
            named = path[-1]
        elif kind == "nonfinite":
            path = rng.choice([p for p in paths if isinstance(_get(recipe, p), float)])
            marker, named = f"__nonfinite_{index}__", path[-1]
            _get(recipe, path[:-1])[path[-1]] = marker
            text = _dump(recipe).replace(f"'{marker}'".encode(), rng.choice(NON_FINITE).encode())
            text = text.replace(marker.encode(), rng.choice(NON_FINITE).encode())
        elif kind == "missing":
            path = rng.choice(
                [
                    ("model",),
                    ("name",),
                    ("model", "name"),
                    ("variants", 2, "stages", 0, "train", "prune", "schedule", "kind"),
                    ("variants", 1, "stages", 0, "train", "regularizers", 0, "lam"),
                    ("variants", 5, "stages", 0, "iterative", "final_sparsity"),
                ]
            )
            del _get(recipe, path[:-1])[path[-1]]
            named = path[-1]
        elif kind == "inverted":
            schedule = recipe["variants"][2]["stages"][0]["train"]["prune"]["schedule"]
            schedule["initial_sparsity"] = round(rng.uniform(0.5, 0.95), 2)
            schedule["final_sparsity"] = round(
                rng.uniform(0.05, schedule["initial_sparsity"] - 0.1), 2
            )
            named = "initial_sparsity"
        elif kind == "option":
            named = _typo(rng, rng.choice(["n_samples", "n_features", "num_classes"]))
            recipe["data"] = {"name": "synthetic", "options": {named: 100}}
        elif kind == "kwarg":
            kwargs = recipe["model"]["kwargs"]
            named = _typo(rng, rng.choice(["in_features", "hidden"]))
            kwargs[named] = kwargs.pop("in_features")
        elif kind == "name":
            recipe["variants"][rng.randrange(len(recipe["variants"]))]["name"] = rng.choice(
                UNSAFE_NAMES
            )
            named = "name"
        else:  # a key written twice in one mapping
            lines = _dump(recipe).decode().splitlines()
            keyed = [
                i
                for i, line in enumerate(lines)
                if ": " in line and not line.strip().startswith("- ")
            ]
            i = rng.choice(keyed)
            lines.insert(i + 1, lines[i])
            text, named = ("\n".join(lines) + "\n").encode(), lines[i].split(":")[0].strip()
        case = RecipeCase(f"{kind}#{index}", "schema", text or _dump(recipe), "reject", field=named)
        cases.append(case)
    return cases


def _laughs(rng: random.Random) -> str:
    width, levels = rng.randint(6, 12), rng.randint(7, 10)
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    where = rng.choice(["name", "model: {name: mlp, kwargs: {in_features: 64, hidden"])
    tail = "}}" if where.startswith("model") else ""
    return "\n".join(lines) + f"\n{where}: *l{levels - 1}{tail}\n"


def _yaml_cases(rng: random.Random, count: int) -> list[RecipeCase]:
    valid = _dump(BASE)
    grammar = ["deep_flow", "deep_block", "laughs", "cycle", "oversize", "binary", "latin1",
               "truncate", "flip", "empty", "list_doc", "scalar_doc", "two_docs", "tabs",
               "huge_string", "bom"]  # fmt: skip
    cases = []
    for index in range(count):
        kind = grammar[index % len(grammar)]
        expect = "reject"
        if kind == "deep_flow":
            depth = rng.randint(100, 5000)
            text = f"name: {'[' * depth}{']' * depth}\n".encode()
        elif kind == "deep_block":
            depth = rng.randint(100, 3000)
            text = "".join(f"{' ' * i}k{i}:\n" for i in range(depth)).encode()
        elif kind == "laughs":
            text = _laughs(rng).encode()
        elif kind == "cycle":
            text = b"name: t\nmodel: &m {name: mlp, kwargs: {in_features: 64, hidden: *m}}\n"
        elif kind == "oversize":  # a huge comment: today's files are ~2 KB
            text = b"# " + b"x" * rng.choice([300_000, 5_000_000, 50_000_000]) + b"\n" + valid
        elif kind == "binary":
            text = bytes(rng.randrange(256) for _ in range(rng.randint(16, 4096))) + b"\x00"
        elif kind == "latin1":
            text = valid.replace(b"name: fuzz", b"name: caf\xe9" + bytes([rng.randint(0x80, 0xFF)]))
        elif kind == "truncate":
            text, expect = valid[: rng.randrange(1, len(valid))], "either"
        elif kind == "flip":
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            text, expect = bytes(data), "either"
        elif kind == "empty":
            text = rng.choice([b"", b"\n", b"# nothing\n", b"~\n"])
        elif kind == "list_doc":
            text = b"- name: t\n- model: mlp\n"
        elif kind == "scalar_doc":
            text = rng.choice([b"42\n", b"just a string\n", b"true\n"])
        elif kind == "two_docs":
            text = valid + b"---\n" + valid
        elif kind == "tabs":
            text = valid.replace(b"\n  ", b"\n\t", 3)
        elif kind == "huge_string":  # a title of 200 KB: refused, and never echoed whole
            text = valid.replace(b"name: fuzz", b"name: " + b"y" * rng.randint(201, 200_000))
        else:
            text, expect = b"\xef\xbb\xbf" + valid, "either"
        cases.append(RecipeCase(f"{kind}#{index}", "yaml", text, expect))
    return cases


def _code_cases(rng: random.Random, count: int) -> list[RecipeCase]:
    cases = []
    for index in range(count):
        recipe = _copy()
        spec = CODE_SPECS[index % len(CODE_SPECS)]
        kwargs = {"command": "touch {canary}"} if spec == "os:system" else {}
        if spec == "subprocess:getoutput":
            kwargs = {"cmd": "touch {canary}"}
        model = {"name": spec, "kwargs": kwargs}
        if index % 3 == 2 and ".py" not in spec:  # a loss is imported, and so run, too
            recipe["train"] = {**recipe.get("train", {}), "loss": spec}
        elif rng.random() < 0.4:  # in a variant of its own rather than the recipe's model
            recipe["variants"][0].update(model=model, start="scratch")
        else:
            recipe["model"] = model
        command = ("validate",) if index % 2 else ("run", "--out", "{dir}/out", "--quiet")
        files = {"evil.py": EVIL_FILE} if "evil.py" in spec else {}
        cases.append(RecipeCase(f"code#{index}", "code", _dump(recipe), "reject", command,
                                files=files))  # fmt: skip
    return cases


FACTORIES = {
    "raises": "def make(**kw):\n    raise RuntimeError('no GPU in this sandbox')\n",
    "syntax": "def make(:\n    pass\n",
    "non_module": "def make(**kw):\n    return [1, 2, 3]\n",
    "import_fails": "import no_such_module_for_prunekit_fuzz\ndef make():\n    pass\n",
    "wrong_kwargs": "from torch import nn\ndef make(width=4):\n    return nn.Linear(64, width)\n",
    "wrong_shape": "from torch import nn\ndef make():\n    return nn.Linear(100, 10)\n",
}
ZOO_MISMATCH = ("lenet5", "resnet20", "vgg11", "tiny_transformer", "lstm", "lenet300")


def _run_cases(rng: random.Random, count: int) -> list[RecipeCase]:
    cases = []
    for index in range(count):
        recipe = {**_copy(), "variants": []}
        kind = ("factory", "zoo", "out_file", "under_file")[index % 4]
        command: tuple[str, ...] = ("run", "--out", "{dir}/out", "--quiet")
        files, trusted = {}, False
        if kind == "factory":
            which = rng.choice(sorted(FACTORIES))
            files, trusted = {"net.py": FACTORIES[which]}, True
            kwargs = {"depth": 3} if which == "wrong_kwargs" else {}
            recipe["model"] = {"name": "{dir}/net.py:make", "kwargs": kwargs}
        elif kind == "zoo":
            recipe["model"] = {"name": rng.choice(ZOO_MISMATCH)}
        elif kind == "out_file":
            files, command = {"taken": "keep"}, ("run", "--out", "{dir}/taken", "--quiet")
        else:
            files, command = {"taken": "keep"}, ("run", "--out", "{dir}/taken/out", "--quiet")
        if kind.endswith("file"):
            recipe["model"] = {"name": "lenet5"}  # would also fail on the data, if it got there
        cases.append(RecipeCase(f"run-{kind}#{index}", "run", _dump(recipe), "reject", command,
                                trusted, files))  # fmt: skip
    return cases


def recipe_cases(seed: int = 0, scale: float = 1.0) -> list[RecipeCase]:
    """All generated recipe cases; ``scale`` shrinks or grows every category."""
    rng = random.Random(seed)

    def n(base: int) -> int:
        return max(1, round(base * scale))

    return [*_schema_cases(rng, n(130)), *_yaml_cases(rng, n(48)), *_code_cases(rng, n(14)),
            *_run_cases(rng, n(16))]  # fmt: skip
