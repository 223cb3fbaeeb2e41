"""Reshape, index and reduction bookkeeping on id arrays, case by case."""

from __future__ import annotations

import numpy as np

from prunekit.structured import layout
from prunekit.structured.channels import Channels, Propagation

IDS = Channels(1, np.array([7, 8, 9]))


def test_flatten_repeats_each_channel_over_its_block() -> None:
    out = layout.reshape(IDS, (1, 3, 2, 2), (1, 12), ["adaptive", "inferred"])
    assert out is not None and out.dim == 1
    assert out.ids.tolist() == [7] * 4 + [8] * 4 + [9] * 4


def test_channels_last_flatten_tiles() -> None:
    last = Channels(3, np.array([7, 8, 9]))
    out = layout.reshape(last, (1, 2, 2, 3), (1, 12), ["adaptive", "inferred"])
    assert out is not None and out.ids.tolist() == [7, 8, 9] * 4


def test_literal_sizes_cannot_follow_the_channels() -> None:
    assert layout.reshape(IDS, (1, 3, 2, 2), (1, 12), ["adaptive", "literal"]) is None
    assert layout.reshape(IDS, (1, 3), (1, 3, 1, 1), ["adaptive", "literal", "literal",
                                                        "literal"]) is None


def test_split_into_blocks_makes_each_block_one_unit() -> None:
    prop = Propagation()
    ids = prop.new_space(6, "q")
    out = layout.reshape(Channels(2, ids), (1, 5, 6), (1, 5, 2, 3),
                         ["adaptive", "adaptive", "inferred", "literal"], prop)
    assert out is not None and out.dim == 2 and out.ids.tolist() == [ids[0], ids[3]]
    labels = prop.components()
    assert len({labels[i] for i in ids[:3]}) == 1 and labels[ids[0]] != labels[ids[3]]
    assert layout.reshape(Channels(2, ids), (1, 5, 6), (1, 5, 2, 3),
                          ["adaptive", "adaptive", "literal", "literal"], prop) is None


def test_index_and_reduce() -> None:
    x = Channels(2, np.array([1, 2]))
    assert layout.index(x, 3, (slice(None), -1)).dim == 1
    assert layout.index(x, 3, (Ellipsis, slice(0, 1))) is None
    assert layout.index(x, 3, (None, Ellipsis)).dim == 3
    assert layout.reduce_dims(x, 3, [1], keepdim=False).dim == 1
    assert layout.reduce_dims(x, 3, [-1], keepdim=False) is None
