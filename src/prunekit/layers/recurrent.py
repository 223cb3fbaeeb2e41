"""Recurrent layers: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` (every layer and direction, ``proj_size``).

Prunable tensors are every layer's and direction's input, recurrent and (LSTM ``proj_size``)
projection matrices; N:M blocks run along their inputs. A structured unit is a hidden unit: one
row per gate of the input and recurrent matrices in every layer and direction, its column of the
recurrent matrix (or of the projection), and the next layer's input columns. With ``proj_size``
the projected outputs are units too. On CPU ``torch.utils.flop_counter`` sees no LSTM work at all
(it runs as one oneDNN op), so MACs are counted here: per step, layer and direction,
``gates·hidden·(input + recurrent input)`` plus ``proj·hidden`` for a projection.

>>> import torch
>>> from torch import nn
>>> from prunekit.layers import kind_of
>>> lstm = nn.LSTM(10, 20, batch_first=True)
>>> kind_of(lstm).macs(lstm, (torch.zeros(1, 7, 10),), None) == 7 * 4 * 20 * (10 + 20)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from prunekit.layers.kind import LAYER_KINDS, LayerKind, Rebuild, Weight
from prunekit.structured.channels import Channels, MacsTerm
from prunekit.structured.site import Site


def gates(m: nn.RNNBase) -> int:
    return 4 if m.mode == "LSTM" else 3 if m.mode == "GRU" else 1


def _cells(m: nn.RNNBase) -> Iterator[tuple[int, str]]:
    """(layer, tensor-name suffix) of every layer and direction: ``(0, "_l0")``, ``(0, "_l0_reverse")``..."""
    for layer in range(m.num_layers):
        for suffix in ("", "_reverse")[: 2 if m.bidirectional else 1]:
            yield layer, f"_l{layer}{suffix}"


def _weights(m: nn.RNNBase) -> list[Weight]:
    kinds = ("ih", "hh", "hr") if m.proj_size else ("ih", "hh")
    return [Weight(f"weight_{k}{tag}", reduction_dim=1) for _, tag in _cells(m) for k in kinds]


def _steps(x: Any, batch_first: bool) -> int:
    """Time steps × sequences of one call (a packed sequence holds exactly its real steps)."""
    if isinstance(x, PackedSequence):
        return int(x.data.shape[0])
    shape = x.shape if isinstance(x, Tensor) else x
    return int(shape[0]) * (int(shape[1]) if len(shape) == 3 else 1)


def _per_step(m: nn.RNNBase) -> list[tuple[int, int, int]]:
    """Per layer and direction: (input MACs, recurrent MACs, projection MACs) of one step."""
    recurrent_in = m.proj_size or m.hidden_size
    directions = 2 if m.bidirectional else 1
    rows = gates(m) * m.hidden_size
    return [
        (rows * (m.input_size if layer == 0 else recurrent_in * directions),
         rows * recurrent_in, m.proj_size * m.hidden_size)
        for layer, _ in _cells(m)
    ]


def _macs(m: nn.RNNBase, inputs: tuple[Any, ...], output: Any) -> int:
    return _steps(inputs[0], m.batch_first) * sum(sum(cell) for cell in _per_step(m))


def recurrent(site: Site, name: str, m: nn.RNNBase) -> Any:
    """Hidden units (and projected units) shared by every layer and direction."""
    prop, x = site.prop, site.node.args[0]
    in_ids = site.ids_at(x, len(site.shape(x)) - 1, m.input_size)
    directions = 2 if m.bidirectional else 1
    hidden = prop.new_space(m.hidden_size, name)
    out = prop.new_space(m.proj_size, name) if m.proj_size else hidden
    rows = np.tile(hidden, gates(m))
    steps = _steps(site.shape(x), m.batch_first)
    for (layer, tag), (ih, hh, hr) in zip(_cells(m), _per_step(m)):
        layer_in = in_ids if layer == 0 else np.tile(out, directions)
        site.member(name, m, f"weight_ih{tag}", 0, rows, "coupled")
        site.member(name, m, f"weight_ih{tag}", 1, layer_in, "in")
        site.member(name, m, f"weight_hh{tag}", 0, rows, "coupled")
        site.member(name, m, f"weight_hh{tag}", 1, out, "coupled")
        site.member(name, m, f"bias_ih{tag}", 0, rows, "coupled")
        site.member(name, m, f"bias_hh{tag}", 0, rows, "coupled")
        prop.macs.append(MacsTerm(name, steps * ih, rows, layer_in))
        prop.macs.append(MacsTerm(name, steps * hh, rows, out))
        if m.proj_size:
            site.member(name, m, f"weight_hr{tag}", 0, out, "coupled")
            site.member(name, m, f"weight_hr{tag}", 1, hidden, "coupled")
            prop.macs.append(MacsTerm(name, steps * hr, out, hidden))
    state = site.arg(1, "hx")
    for s, ids in zip(state if isinstance(state, (tuple, list)) else (state,), (out, hidden)):
        shape, info = site.shape(s), site.info(s)
        if shape is None:
            continue
        if isinstance(info, Channels) and info.dim == len(shape) - 1:
            prop.union(info.ids, ids)
        else:
            site.pin(ids, "the initial state is built with a fixed size (build it from the input "
                          "or pass none)")
    prop.axis(name, "in", in_ids)
    prop.axis(name, "hidden", hidden)
    if m.proj_size:
        prop.axis(name, "proj", out)
    prop.mark_unfoldable(hidden)
    prop.mark_unfoldable(out)
    last = len(site.out_shape[0]) - 1
    h_state = Channels(last, out, False)
    states = (h_state, Channels(last, hidden, False)) if m.mode == "LSTM" else h_state
    return (Channels(last, np.tile(out, directions), False), states)


def _resize(m: nn.RNNBase, kept: dict[str, int]) -> None:
    m.input_size, m.hidden_size = kept["in"], kept["hidden"]
    if m.proj_size:
        m.proj_size = kept["proj"]
    m._init_flat_weights()


_FIELDS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
           "bidirectional")  # fmt: skip
_SIZES = ("input_size", "hidden_size", "proj_size")


def _kind(fields: tuple[str, ...]) -> LayerKind:
    return LayerKind(weights=_weights, propagate=recurrent, resize=_resize,
                     size_attributes=_SIZES, macs=_macs, rebuild=Rebuild(fields))


LAYER_KINDS[nn.LSTM] = _kind((*_FIELDS, "proj_size"))
LAYER_KINDS[nn.GRU] = _kind(_FIELDS)
LAYER_KINDS[nn.RNN] = _kind((*_FIELDS, "nonlinearity"))
