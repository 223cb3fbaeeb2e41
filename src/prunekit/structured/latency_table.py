"""What each layer costs in time at each width: the table latency-aware pruning reads.

Why measure instead of counting MACs: on a CPU, time per MAC differs by layer and by width.
On ResNet-18 (batch 8, 224², 2 threads) a pruned 1×1 downsample conv runs at ~35 GMAC/s and
the 3-input-channel stem at ~50 while 3×3 convs reach 70-90, and a layer's weights are cold in
a real forward pass (the previous layers evicted them) but warm when it is timed alone.

So :func:`measure_latency_table` times layers *inside the model*: it builds a few pruned
copies of the model (each group of units keeps a random one of ``fractions`` of its units,
rounded to multiples of ``round_to``; the first copy is the dense model), deploys each as it
will run, and runs them round-robin with a timer around every Conv2d and Linear. Two
deployments: ``"fused"`` (the default) as :func:`~prunekit.structured.deploy.fuse_for_cpu`
serves it (channels-last, prepacked weights, activations and residual adds fused), and
``"eager"``, the plain module in eager PyTorch, where BatchNorm, activations and pooling are
modules of their own: each one's time is added to the Conv2d or Linear that ran last before it
(the layer whose output it reads, and whose output channels set its cost), so a conv's entry
is what removing its channels saves in eager mode, not its convolution alone. Each layer's
medians are then fitted by least squares with

    ms(in, out) = a + b·in + c·out + d·in·out

(a fixed cost, reading the input, writing the output, the multiply-accumulates), which is what a
pruner needs: a layer's time at any width. Everything else (pooling, Python) is ``rest_ms``,
measured on the dense model and taken as fixed, so estimates err on the slow side. A table is a
small JSON file (:meth:`LatencyTable.save` / :meth:`LatencyTable.load`): measure once per model,
input shape, thread count and machine, then prune as often as you like.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 16, 3))
>>> table = measure_latency_table(net, torch.randn(2, 3, 16, 16), configs=4, repeats=2)
>>> sorted(table.layers), table.layers["0"].out_channels
(['0', '2'], 32)
>>> table.layers["2"].in_channels, table.layer_ms("2", 8, 16) >= 0.0  # any width, in ms
(32, True)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from prunekit import distributed
from prunekit.io import write_text_atomic
from prunekit.latency import fixed_threads, interleaved_times
from prunekit.layers import kind_of
from prunekit.machine import cpu_info
from prunekit.structured.deploy import FusedConv, fuse_for_cpu
from prunekit.structured.graph import DependencyGraph, build_graph
from prunekit.structured.rewrite import remove_units
from prunekit.structured.trace import single_thread

FORMAT_VERSION = 1
DEPLOYMENTS = ("fused", "eager")
"""How a table's models run while timed (see the module docstring)."""


@dataclass(frozen=True)
class LayerCost:
    """``ms(in, out) = a + b·in + c·out + d·in·out`` for one layer, fitted on measurements.

    ``in_channels`` and ``out_channels`` are the dense widths (features for a Linear); ``in``
    is ignored for a grouped conv (``coupled``: its input shrinks with its output).
    """

    coefficients: tuple[float, float, float, float]
    in_channels: int
    out_channels: int
    coupled: bool = False

    def at(self, kept_in: float, kept_out: float) -> float:
        """Milliseconds at ``kept_in`` input and ``kept_out`` output channels (never < 0)."""
        a, b, c, d = self.coefficients
        kept_in = self.in_channels if self.coupled else kept_in
        return max(0.0, a + b * kept_in + c * kept_out + d * kept_in * kept_out)


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer costs of one model on one input shape, thread count and machine.

    ``fit_error`` is the largest relative difference between the measured and the predicted
    time of the whole model over the measured configurations.
    """

    layers: dict[str, LayerCost]
    dense_ms: float
    rest_ms: float
    input_shape: tuple[int, ...]
    threads: int
    seconds: float
    fit_error: float
    deployment: str = "fused"

    def layer_ms(self, name: str, kept_in: float, kept_out: float) -> float:
        """Milliseconds of layer ``name`` at the given kept widths."""
        return self.layers[name].at(kept_in, kept_out)

    def estimate_ms(self, model: nn.Module) -> float:
        """Predicted milliseconds of ``model`` (the dense one or a pruned copy), deployed.

        >>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3))
        >>> table = measure_latency_table(net, torch.randn(2, 3, 16, 16), configs=4, repeats=2)
        >>> table.estimate_ms(net) > table.rest_ms
        True
        """
        return self.rest_ms + sum(
            cost.at(*_widths(model.get_submodule(name))) for name, cost in self.layers.items()
        )

    def check(self, graph: DependencyGraph, example_input: Tensor) -> None:
        """Raise if this table was measured for another model or input than ``graph``'s."""
        if tuple(example_input.shape[1:]) != self.input_shape[1:]:
            raise ValueError(
                f"the latency table was measured on inputs of shape {self.input_shape}; this "
                f"input is {tuple(example_input.shape)}: measure a table for it with "
                "measure_latency_table(model, example_input)"
            )
        for name, cost in self.layers.items():
            try:
                widths = _widths(graph.model.get_submodule(name))
            except AttributeError:
                widths = None
            if widths != (cost.in_channels, cost.out_channels):
                raise ValueError(
                    f"the latency table does not match this model at layer {name!r} (table: "
                    f"{cost.in_channels}→{cost.out_channels}, model: "
                    f"{'missing' if widths is None else '→'.join(map(str, widths))}); measure "
                    "a table on the dense model you prune (measure_latency_table)"
                )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON (atomically)."""
        write_text_atomic(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read a table written by :meth:`save`."""
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        return cls.from_json(data, source=str(path))

    def to_json(self) -> dict:
        """The table as JSON-able data (what :meth:`save` writes)."""
        return {"format": FORMAT_VERSION, "torch": torch.__version__, **asdict(self)}

    @classmethod
    def from_json(cls, data: object, *, source: str = "latency table") -> LatencyTable:
        """The table :meth:`to_json` gave; ``source`` names it in the error for other data."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{source}: not a prunekit latency table (format {FORMAT_VERSION})")
        layers = {name: LayerCost(tuple(c["coefficients"]), c["in_channels"],
                                  c["out_channels"], c["coupled"])
                  for name, c in data["layers"].items()}
        return cls(layers, data["dense_ms"], data["rest_ms"], tuple(data["input_shape"]),
                   data["threads"], data["seconds"], data["fit_error"],
                   data.get("deployment", "fused"))


def _widths(layer: nn.Module) -> tuple[int, int]:
    kind = kind_of(layer)
    if kind is None or kind.widths is None:
        raise AttributeError(f"{type(layer).__name__} has no widths in its layer description")
    return kind.widths(layer)


def group_rounding(round_to: int | None, size: int) -> int:
    """The multiple a group of ``size`` units keeps: ``round_to`` when given; by default the
    CPU's vector width in floats (16 with AVX-512, else 8) where the group holds at least four
    vectors' worth, so the rounding still leaves it a choice of widths, else 8 (a group at
    most 8 wide loses one unit at a time, as with any ``round_to`` at least its size).

    >>> group_rounding(4, 64), group_rounding(None, 50)
    (4, 8)
    """
    if round_to is not None:
        return round_to
    vector = cpu_info().vector_channels
    return vector if size >= 4 * vector else 8


def _kept(size: int, fraction: float, round_to: int) -> int:
    if size <= round_to:
        return max(1, round(fraction * size))
    return min(size, max(round_to, round(fraction * size / round_to) * round_to))


def _pruned_copies(
    graph: DependencyGraph, example: Tensor, fractions: Sequence[float], configs: int,
    round_to: int | None, seed: int,
) -> list[nn.Module]:
    """The dense model and ``configs - 1`` copies with random kept fractions per group."""
    rng = np.random.default_rng(seed)
    models = [copy.deepcopy(graph.model)]
    for _ in range(configs - 1):
        twin = dataclasses.replace(graph, model=copy.deepcopy(graph.model))  # same names
        remove = np.zeros(twin.num_units, dtype=bool)
        for group in twin.groups:
            kept = _kept(group.size, float(rng.choice(fractions)),
                         group_rounding(round_to, group.size))
            remove[group.units[kept:]] = True
        with single_thread():
            remove_units(twin, remove, example)
        models.append(twin.model)
    return models


class _LayerTimer:
    """Wall time of the named layers of a deployed model, recorded while ``active``; with
    ``followers``, every other leaf module's time goes to the named layer that ran last."""

    def __init__(self, deployed: nn.Module, names: set[str], followers: bool = False) -> None:
        self.active = False
        self.times: dict[str, list[float]] = {name: [] for name in names}
        self.widths: dict[str, tuple[int, int]] = {}
        self.owner: str | None = None  # the named layer that ran last in this forward
        for qualified, module in deployed.named_modules():
            name = module.source if isinstance(module, FusedConv) else qualified
            if name in names:
                weight = module.weight
                self.widths[name] = _widths(module) if not isinstance(module, FusedConv) else (
                    weight.shape[1] * module.geometry[3], weight.shape[0])
                module.register_forward_pre_hook(self._start)
                module.register_forward_hook(self._stop(name))
            elif followers and not any(True for _ in module.children()):
                module.register_forward_pre_hook(self._start)
                module.register_forward_hook(self._follow)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Record the layers' times only inside this block (one forward pass)."""
        self.active, self.owner = True, None
        try:
            yield
        finally:
            self.active = False

    def _start(self, module: nn.Module, args: tuple) -> None:
        module._prunekit_started = time.perf_counter()

    def _stop(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if self.active:
                self.times[name].append((time.perf_counter() - module._prunekit_started) * 1e3)
                self.owner = name

        return hook

    def _follow(self, module: nn.Module, args: tuple, output: object) -> None:
        if self.active and self.owner is not None:
            self.times[self.owner][-1] += (time.perf_counter() - module._prunekit_started) * 1e3


def _fit(samples: list[tuple[int, int, float]], dense: tuple[int, int], coupled: bool) -> LayerCost:
    """Least squares of the bilinear cost on (kept in, kept out, median ms) samples."""
    kept_in = np.array([dense[0] if coupled else s[0] for s in samples], dtype=float)
    kept_out = np.array([s[1] for s in samples], dtype=float)
    ms = np.array([s[2] for s in samples])
    design = np.stack([np.ones_like(ms), kept_in, kept_out, kept_in * kept_out], axis=1)
    scale = np.abs(design).max(axis=0)
    solution, *_ = np.linalg.lstsq(design / scale, ms, rcond=None)
    coefficients = tuple(float(v) for v in solution / scale)
    return LayerCost(coefficients, dense[0], dense[1], coupled)  # type: ignore[arg-type]


def measure_latency_table(
    model: nn.Module,
    example_input: Tensor,
    *,
    configs: int = 16,
    fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    repeats: int = 3,
    round_to: int | None = None,
    threads: int | None = None,
    ignore: Sequence[str] = (),
    seed: int = 0,
    deployment: str = "fused",
) -> LatencyTable:
    """Time every prunable Conv2d and Linear of ``model`` inside ``configs`` pruned copies,
    deployed as ``deployment`` says (``"fused"`` or ``"eager"``, see the module docstring).

    ``example_input`` is a full batch of the shape the model will serve (the batch size decides
    how well oneDNN fills the cores); ``ignore`` and ``round_to`` are what you will give the
    pruner (by default each group is rounded as :func:`group_rounding` says, as the pruner
    rounds it, so the copies timed have widths the pruner can choose).
    Costs ``configs × 2 × repeats`` forward passes (ResNet-18 at batch 8, 224², two
    threads: ~20 s); save the table and reuse it. Under torchrun, rank 0 alone measures and
    every rank returns its table (all ranks must call this together).
    """
    if configs < 2:
        raise ValueError(f"configs must be >= 2 (the dense model and a pruned one), got {configs}")
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {tuple(fractions)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"deployment must be one of {DEPLOYMENTS}, got {deployment!r}")

    def measure() -> LatencyTable:
        return _measured_table(model, example_input, configs, fractions, repeats, round_to,
                               threads, ignore, seed, deployment)

    return distributed.measured_on_writer(measure, LatencyTable.to_json, LatencyTable.from_json)


def _measured_table(
    model: nn.Module, example_input: Tensor, configs: int, fractions: Sequence[float],
    repeats: int, round_to: int | None, threads: int | None, ignore: Sequence[str], seed: int,
    deployment: str,
) -> LatencyTable:
    eager = deployment == "eager"
    start = time.perf_counter()
    with single_thread():
        graph = build_graph(model, example_input, ignore=ignore)
    names = {t.module for t in graph.macs
             if isinstance(model.get_submodule(t.module), (nn.Conv2d, nn.Linear))}
    coupled = {t.module for t in graph.macs if t.in_ids is None}
    batch = example_input
    if example_input.dim() == 4 and not eager:
        batch = example_input.to(memory_format=torch.channels_last)
    with fixed_threads(threads):
        copies = _pruned_copies(graph, example_input, fractions, configs, round_to, seed)
        deployed = [m.eval() if eager else fuse_for_cpu(m, batch) for m in copies]
        timers = [_LayerTimer(d, names, followers=eager) for d in deployed]
        totals = _round_robin(deployed, timers, batch, repeats)
        used_threads = torch.get_num_threads()
    medians = [{n: statistics.median(t.times[n]) for n in names} for t in timers]
    layers = {
        name: _fit([(*timer.widths[name], m[name]) for timer, m in zip(timers, medians)],
                   timers[0].widths[name], name in coupled)
        for name in sorted(names)
    }
    rest = max(0.0, totals[0] - sum(medians[0].values()))
    predicted = [rest + sum(layers[n].at(*timer.widths[n]) for n in names) for timer in timers]
    fit_error = max(abs(p - t) / t for p, t in zip(predicted, totals))
    return LatencyTable(layers, totals[0], rest, tuple(example_input.shape), used_threads,
                        time.perf_counter() - start, fit_error, deployment)


def _round_robin(
    deployed: list[nn.Module], timers: list[_LayerTimer], batch: Tensor, repeats: int
) -> list[float]:
    """Run every deployed copy ``repeats`` times, untimed then timed, in balanced orders;
    returns each copy's median whole-model milliseconds. Layer timers see the timed calls."""
    runs = {index: (lambda model=model: model(batch)) for index, model in enumerate(deployed)}
    with torch.inference_mode():
        times = interleaved_times(runs, repeats=repeats, warmup=1, untimed_per_turn=1,
                                  timed_scope=lambda index: timers[index].recording())
    return [statistics.median(times[index]) for index in range(len(deployed))]
