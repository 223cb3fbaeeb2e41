"""2:4 sparsity on a CUDA GPU, through PyTorch's own semi-structured sparse tensors.

Why: NVIDIA GPUs from Ampere on (compute capability 8.0+) have sparse tensor cores that skip
half the multiplications of a weight with at most 2 non-zeros in every 4 consecutive inputs —
the pattern :func:`prunekit.sparse.prune_nm` (``n=2, m=4``) makes. PyTorch reaches them with
``torch.sparse.to_sparse_semi_structured`` (CUTLASS or cuSPARSELt kernels, fp16/bf16).
:func:`deploy_semi_structured` converts every 2:4-sparse Linear, checks the output against the
dense model and times both (with a noise band) on the example input; the sparse model is
returned only when it is faster beyond the noise. This is an optional backend: without a
suitable GPU it raises :class:`SemiStructuredUnavailable` with one line saying why, and
nothing else in prunekit needs it. (Not run by the test suite's CI, which has no GPU.)

>>> reason = semi_structured_unavailable_reason()
>>> reason is None or isinstance(reason, str)
True
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.latency import NoiseBand, time_until_stable
from prunekit.sparse.nm import is_nm_sparse

MIN_CAPABILITY = (8, 0)
"""Sparse tensor cores appeared with Ampere (sm_80)."""


class SemiStructuredUnavailable(RuntimeError):
    """No GPU here that can run 2:4 semi-structured sparse kernels."""


def semi_structured_unavailable_reason() -> str | None:
    """Why 2:4 semi-structured kernels cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name()
        return (
            f"{name} has compute capability {capability[0]}.{capability[1]}; 2:4 sparse tensor "
            f"cores need {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} (Ampere) or later"
        )
    return None


@dataclass(frozen=True)
class SemiStructuredResult:
    """Per Linear layer what happened ("2:4 sparse" or why it stayed dense), and the timing."""

    layers: dict[str, str]
    dense_ms: float | None
    sparse_ms: float | None
    band: NoiseBand | None
    deployed: bool

    @property
    def speedup(self) -> float | None:
        """Dense over 2:4 median time, as measured (None when nothing was converted)."""
        if self.dense_ms is None or not self.sparse_ms:
            return None
        return self.dense_ms / self.sparse_ms


def _convert(model: nn.Module) -> dict[str, str]:
    """Swap each 2:4-sparse Linear weight of ``model`` (on CUDA) for a semi-structured one."""
    from torch.sparse import to_sparse_semi_structured

    layers = {}
    for name, module in model.named_modules():
        if type(module) is not nn.Linear:
            continue
        weight = module.weight.detach()
        if not is_nm_sparse(weight, 2, 4):
            layers[name] = "dense: not 2:4 sparse"
            continue
        try:
            sparse = to_sparse_semi_structured(weight.contiguous())
        except (RuntimeError, NotImplementedError) as err:
            layers[name] = f"dense: {str(err).splitlines()[0]}"
            continue
        module.weight = nn.Parameter(sparse, requires_grad=False)
        layers[name] = "2:4 sparse"
    return layers


def deploy_semi_structured(
    model: nn.Module,
    example_input: Tensor,
    *,
    dtype: torch.dtype = torch.float16,
    min_speedup: float = 1.0,
    budget_s: float = 10.0,
    atol: float = 5e-2,
) -> tuple[nn.Module, SemiStructuredResult]:
    """A CUDA ``dtype`` copy of ``model`` with its 2:4-sparse Linears on sparse tensor cores
    if that measured faster than the same copy dense beyond the noise band; else the dense copy.

    ``example_input`` should have the batch size of real use. Raises
    :class:`SemiStructuredUnavailable` without a suitable GPU, ``ValueError`` when the sparse
    output differs from dense by more than ``atol`` (relative to the output's scale).
    """
    reason = semi_structured_unavailable_reason()
    if reason is not None:
        raise SemiStructuredUnavailable(f"2:4 semi-structured sparsity needs a GPU: {reason}")
    dense = copy.deepcopy(model).to("cuda", dtype).eval()
    sparse = copy.deepcopy(dense)
    layers = _convert(sparse)
    if not any(status == "2:4 sparse" for status in layers.values()):
        return dense, SemiStructuredResult(layers, None, None, None, deployed=False)
    x = example_input.to("cuda", dtype)
    with torch.inference_mode():
        reference, output = dense(x), sparse(x)
        scale = float(reference.abs().max()) or 1.0
        if not torch.allclose(output, reference, atol=atol * scale, rtol=0):
            raise ValueError(
                f"2:4 sparse output differs from dense beyond atol={atol} of its scale; "
                "keep the model dense"
            )

        def synchronized(module: nn.Module) -> Callable[[], None]:
            def run() -> None:
                module(x)
                torch.cuda.synchronize()

            return run

        timed = time_until_stable(
            {"dense": synchronized(dense), "2:4": synchronized(sparse)},
            reference="dense", budget_s=budget_s, untimed_per_turn=1,
        )  # fmt: skip
    speedup = timed.speedup("dense", "2:4")
    deployed = speedup > min_speedup and not timed.band.contains(speedup)
    medians = timed.medians
    result = SemiStructuredResult(layers, medians["dense"], medians["2:4"], timed.band, deployed)
    return (sparse if deployed else dense), result
