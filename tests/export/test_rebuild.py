"""A hostile architecture description: every name is resolved by construction, or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.export.allowlist import ArchitectureError
from prunekit.export.architecture import describe, trace
from prunekit.export.rebuild import checked_path, rebuild


def _node(op: str, name: str, target: str, *args: object) -> dict:
    return {"op": op, "name": name, "target": target, "args": {"tuple": list(args)},
            "kwargs": {"dict": {}}}  # fmt: skip


def _ref(name: str) -> dict:
    return {"node": name}


def _exec_graph(canary: Path) -> list[dict]:
    """The exploit the issue reported: reach ``exec`` through a layer method's __globals__,
    store it as a layer's forward with ``__setattr__``, then call that layer with code."""
    code = f"open({str(canary)!r}, 'w').write('pwned')"
    return [
        _node("placeholder", "x", "x"),
        _node("get_attr", "g", "0.reset_parameters.__globals__"),
        _node("call_function", "b", "operator.getitem", _ref("g"), "__builtins__"),
        _node("call_function", "e", "operator.getitem", _ref("b"), "exec"),
        _node("call_module", "s", "1.__setattr__", "forward", _ref("e")),
        _node("call_module", "r", "1", code),
        _node("call_module", "y", "0", _ref("x")),
        _node("output", "output", "output", _ref("y")),
    ]


def _linear_relu() -> tuple[dict, dict]:
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    return json.loads(json.dumps(describe(trace(net)))), net.state_dict()


def test_the_reported_exec_exploit_is_refused_at_load_and_runs_nothing(tmp_path: Path) -> None:
    description, state = _linear_relu()
    description["graph"] = _exec_graph(tmp_path / "canary")
    with pytest.raises(ArchitectureError, match="__globals__"):
        rebuild(description, state)
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (_node("get_attr", "a", "0.forward"), "not a plain layer or tensor name"),
        (_node("get_attr", "a", "0.reset_parameters"), "not a tensor it holds"),
        (_node("get_attr", "a", "0.weight.data"), "not a tensor it holds"),
        (_node("get_attr", "a", "0.__class__"), "not a plain layer"),
        (_node("get_attr", "a", "graph"), "not a plain layer"),
        (_node("call_module", "a", "0.weight", _ref("IN")), "not a layer it describes"),
        (_node("call_module", "a", "0.reset_parameters"), "not a layer it describes"),
        (_node("call_module", "a", "apply", _ref("IN")), "not a plain layer"),
        (_node("call_method", "a", "add", 1, 2), "must be called on a graph value"),
        (_node("call_function", "a", "builtins.getattr", "str", "shape"), "of a graph value"),
        (_node("call_function", "a", "builtins.getattr", _ref("IN"), "__class__"), "tensor properties"),
        (_node("call_function", "a", "torch.frombuffer", _ref("IN")), "not in prunekit's allowlist"),
    ],
)
def test_targets_must_be_what_the_rebuild_created(node: dict, message: str) -> None:
    description, state = _linear_relu()
    placeholder = description["graph"][0]["name"]
    description["graph"].insert(1, json.loads(json.dumps(node).replace('"IN"', f'"{placeholder}"')))
    with pytest.raises(ArchitectureError, match=message):
        rebuild(description, state)


@pytest.mark.parametrize(
    "description",
    [[], "prunekit.architecture", 7, None, {"format": "prunekit.architecture", "version": True}],
)
def test_a_description_that_is_not_a_mapping_is_one_clean_error(description: object) -> None:
    with pytest.raises(ArchitectureError):
        rebuild(description, {})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("graph", {"op": "output"}, "'graph' must be a list"),
        ("modules", ["0"], "'modules' must be a mapping"),
        ("tied", {"0.weight": 5}, "tied tensor"),
        ("training", "yes", "must be true or false"),
    ],
)
def test_fields_of_the_wrong_type_are_refused(field: str, value: object, message: str) -> None:
    description, state = _linear_relu()
    description[field] = value
    with pytest.raises(ArchitectureError, match=message):
        rebuild(description, state)


def test_a_layer_type_without_a_name_string_is_refused() -> None:
    description, state = _linear_relu()
    description["modules"]["0"]["type"] = ["torch.nn.Linear"]
    with pytest.raises(ArchitectureError, match="'type' must be a layer name"):
        rebuild(description, state)


def test_checked_path_accepts_model_names_and_refuses_reach_outs() -> None:
    assert checked_path("layer1.0.downsample.1") == "layer1.0.downsample.1"
    assert checked_path("_private_head.weight") == "_private_head.weight"  # a registered child
    for bad in ("0.forward", "a.__dict__", "a..b", "a.b c", "", "0.graph", 3):
        with pytest.raises(ArchitectureError):
            checked_path(bad)


def test_a_model_whose_names_cannot_be_loaded_is_refused_when_saving() -> None:
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.__dict__["_modules"]["__hidden"] = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._modules["__hidden"](x)

    with pytest.raises(ArchitectureError, match="__hidden"):
        describe(trace(Holder()))
