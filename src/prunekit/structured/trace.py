"""Trace a model into an fx graph and record the shape of every value on a real example input.

Why fx: ``torch.fx.symbolic_trace`` gives, in milliseconds, a graph whose layer calls are still
the user's ``nn.Module`` objects (``call_module`` nodes with qualified names), so a coupling found
in the graph points straight at the module whose weights must shrink, and the module stack of
every op is known for error messages. What fx alone cannot give is shapes (needed where a
channel owns an H·W block of a flattened tensor); one real forward pass over the example
through an ``fx.Interpreter`` records them. The whole example runs, not a slice of it: which
dim of each input is the batch is the model's business (``(L, N, E)`` sequences, masks of
``(L, S)``), and cutting the wrong one would record wrong shapes.

Leaves are the layers prunekit has a description for (:mod:`prunekit.layers`, found along the
MRO, so a user's subclass of ``nn.Conv2d`` is a Conv2d leaf) and, as fx has it, torch.nn's
other layers; everything else is traced through.

Fallback: when fx cannot trace a submodule's code (Python control flow on tensor values, for
example), that submodule becomes an opaque leaf and tracing is retried: the rest of the model is
still pruned, and the leaf's channels are left as they are (the graph pins everything that
enters it, naming the error). Modules named in ``ignore`` are opaque leaves from the start. Only
a model whose own ``forward`` cannot be traced raises :class:`TraceError`.

>>> import torch
>>> from torch import nn
>>> t = trace_model(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (torch.zeros(2, 4),))
>>> [tuple(t.shapes[n]) for n in t.module.graph.nodes if n.op == "call_module"]
[(2, 3), (2, 3)]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from prunekit.layers import kind_of
from prunekit.modes import eval_mode

log = logging.getLogger(__name__)


class TraceError(ValueError):
    """The model could not be traced; the message says why and what to do."""


@dataclass(frozen=True)
class Trace:
    """A traced model: the fx graph module (sharing the model's submodules) and value shapes.

    ``shapes[node]`` is a ``torch.Size`` for a tensor, a tuple of such for tuples and lists of
    tensors, and ``None`` for anything else (sizes, ints, dtypes). ``opaque`` maps each module
    kept whole to why (named in ``ignore``, or the error fx raised inside it).
    """

    module: fx.GraphModule
    shapes: dict[fx.Node, Any]
    opaque: dict[str, str]


def _meta(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size):
        metas = tuple(_meta(v) for v in value)
        return metas if any(m is not None for m in metas) else None
    return None


class _ShapeRecorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.shapes: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.shapes[n] = _meta(result)
        return result


class _Tracer(fx.Tracer):
    """fx's tracer, with described layers and the named submodules kept as leaves."""

    def __init__(self, leaves: dict[str, str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaves:
            return True
        kind = kind_of(m)
        if kind is not None and kind.propagate is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _symbolic_trace(
    model: nn.Module, leaves: dict[str, str]
) -> tuple[fx.GraphModule, dict[str, str]]:
    """Trace, turning each submodule fx fails inside into a leaf, innermost first; returns the
    graph and every opaque leaf with why it is one."""
    while True:
        tracer = _Tracer(leaves)
        try:
            graph = tracer.trace(model)
        except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError...
            failing = next(reversed(tracer.module_stack), "") if tracer.module_stack else ""
            if not failing or failing in leaves:
                raise TraceError(
                    f"torch.fx cannot trace {type(model).__name__}.forward: "
                    f"{type(exc).__name__}: {exc}. Structured pruning needs a traceable "
                    "forward: move Python control flow on tensor values into a submodule "
                    "(which is then kept as it is) or out of forward()"
                ) from exc
            log.warning("fx cannot trace %r (%s); its channels are left unpruned", failing, exc)
            leaves = {**leaves, failing: (
                f"torch.fx cannot trace its forward ({type(exc).__name__}: {exc}); make it "
                "traceable (no Python control flow on tensor values) or describe it as a layer "
                "(docs/layers.md)"
            )}
            continue
        return fx.GraphModule(model, graph), leaves


def run_example(
    model: nn.Module, forward: Callable[..., Any], example_inputs: tuple[Tensor, ...]
) -> Any:
    """``forward(*example_inputs)`` in eval mode without gradients, on one thread.

    A second thread only adds synchronisation to this small pass (on a busy 2-core machine,
    10× slower). Every submodule's mode and the thread count are restored.
    """
    with eval_mode(model), torch.no_grad(), single_thread():
        return forward(*example_inputs)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the body on one intra-op thread, then restore the thread count.

    Pruning's own work (the example's forward, norms of weights, slicing) is small; on a busy
    machine a second thread mostly waits for the first.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trace_model(
    model: nn.Module, example_inputs: tuple[Tensor, ...], ignore: frozenset[str] = frozenset()
) -> Trace:
    """Trace ``model`` (``ignore``-d submodules as opaque leaves) and record value shapes."""
    graph_module, opaque = _symbolic_trace(model, dict.fromkeys(ignore, "named in ignore"))
    recorder = _ShapeRecorder(graph_module)
    run_example(model, recorder.run, example_inputs)
    return Trace(graph_module, recorder.shapes, opaque)
