from __future__ import annotations

import json
import math

import pytest
import torch
from torch import fx

from prunekit.export.allowlist import ArchitectureError
from prunekit.export.values import decode_value, encode_value


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -2.5, "s", [1, (2, 3)], (), slice(1, None, 2), Ellipsis, torch.float16,
     torch.device("cpu"), torch.channels_last, torch.strided, float("inf"), float("nan"),
     {"dim": (1,), "keepdim": True}],
)  # fmt: skip
def test_argument_values_round_trip_through_json(value: object) -> None:
    decoded = decode_value(json.loads(json.dumps(encode_value(value, "test"))), {})
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(decoded)
    else:
        assert decoded == value and type(decoded) is type(value)


def test_node_references_resolve_to_defined_nodes_only() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    assert encode_value((x, 1), "test") == {"tuple": [{"node": "x"}, 1]}
    assert decode_value({"tuple": [{"node": "x"}, 1]}, {"x": x}) == (x, 1)
    with pytest.raises(ArchitectureError, match="before it is defined"):
        decode_value({"node": "y"}, {"x": x})


@pytest.mark.parametrize(
    "encoded",
    [{"dtype": "load"}, {"dtype": "Tensor"}, {"float": "1e400"}, {"pickle": "x"}, {"a": 1, "b": 2}],
)
def test_unknown_tags_and_names_are_refused(encoded: dict) -> None:
    with pytest.raises(ArchitectureError, match="unknown tag|not a valid"):
        decode_value(encoded, {})


def test_values_json_cannot_hold_are_named() -> None:
    with pytest.raises(ArchitectureError, match="where: value .*Tensor"):
        encode_value(torch.zeros(1), "where")


@pytest.mark.parametrize(
    "payload",
    [
        {"tuple": "abc"}, {"tuple": {"a": 1}}, {"slice": [1, 2]}, {"slice": "::2"},
        {"dict": [1, 2]}, {"node": ["x"]}, {"node": {"a": 1}}, {"device": 5},
        {"device": "no-such-device"}, {"dtype": ["float16"]}, {"float": 1.5},
        {"ellipsis": [1]}, {"layout": "float16"},
    ],
)
def test_malformed_tag_payloads_are_one_clean_error(payload: dict) -> None:
    with pytest.raises(ArchitectureError):
        decode_value(payload, {})


def test_deep_nesting_is_refused_before_python_recursion_runs_out() -> None:
    deep: object = 0
    for _ in range(5000):
        deep = {"tuple": [deep]}
    with pytest.raises(ArchitectureError, match="nested deeper"):
        decode_value(deep, {})
    shallow: object = 0
    for _ in range(20):
        shallow = [shallow]
    assert decode_value(shallow, {}) == shallow
