"""Several processes, one result: torchrun's environment, one writer, identical decisions.

Why a module of its own: data-parallel training is easy to get *almost* right. Each rank must
see its own share of the same global batches (so one seed gives the same training whatever the
world size), every pruning decision must be the same on every rank (a mask computed twice from
weights that differ in the last bit is a different model), and exactly one process may write a
file. Everything here is a no-op in a single process, so code that calls it behaves exactly as
before when nobody launched it with ``torchrun``.

- :func:`init_from_env` joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``…): ``nccl`` when CUDA is there, ``gloo`` on CPU.
- :func:`rank`, :func:`world_size`, :func:`is_writer` (rank 0), :func:`barrier`.
- :func:`shard`: a rank's contiguous share of one global batch.
- :func:`broadcast_module` makes every rank hold rank 0's tensors (weights, masks, statistics);
  :func:`check_identical` fails loudly when ranks' models differ.
- :func:`on_writer` runs a function on rank 0 only and hands its JSON result (or its error) to
  every rank; :func:`read_on_writer` does the same for a file's bytes, so a checkpoint or a
  saved model never needs a file system shared by the machines.

>>> world_size(), rank(), is_writer()  # not launched by torchrun: one process
(1, 0, True)
>>> [s.tolist() for s in (shard(torch.arange(5), r, 2) for r in range(2))]
[[0, 1, 2], [3, 4]]
>>> on_writer(lambda: {"answer": 42})
{'answer': 42}
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

T = TypeVar("T")

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun (or Slurm/Kubernetes launching it) sets for every worker."""


class RankMismatch(RuntimeError):
    """Ranks that should hold the same thing do not (a decision that was not shared)."""


class WriterFailed(ValueError):
    """Raised on the other ranks when rank 0 failed inside :func:`on_writer`; rank 0 has
    already raised (and reported) the error itself."""


def launched() -> bool:
    """True when torchrun (or anything speaking its protocol) started more than one worker."""
    return all(key in os.environ for key in LAUNCH_ENV) and int(os.environ["WORLD_SIZE"]) > 1


BACKEND_ENV = "PRUNEKIT_DISTRIBUTED_BACKEND"
"""Set to ``gloo`` or ``nccl`` to choose the backend instead of letting prunekit choose."""


def backend() -> str:
    """``nccl`` where NCCL is there and every local worker has a GPU of its own, else ``gloo``
    (the CPU); :data:`BACKEND_ENV` overrides the choice."""
    chosen = os.environ.get(BACKEND_ENV)
    if chosen is not None:
        if chosen not in ("gloo", "nccl"):
            raise ValueError(f"{BACKEND_ENV}={chosen!r}: choose gloo or nccl")
        return chosen
    local_workers = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dist.is_nccl_available() and gpus >= local_workers:
        return "nccl"
    if gpus:
        log.warning("%d local workers but %d GPUs: training on the CPU with gloo", local_workers,
                    gpus)
    return "gloo"


def init_from_env(timeout_s: float = 1800.0) -> bool:
    """Join torchrun's process group; returns whether this process is one of several.

    Each GPU worker uses the device of its ``LOCAL_RANK``. ``timeout_s`` bounds how long a
    collective waits for a rank that died (torchrun then stops the others).
    """
    if not launched():
        return False
    if not dist.is_initialized():
        chosen = backend()
        if chosen == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(chosen, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shutdown(*, finished: bool = False) -> None:
    """Leave the process group (the end of a launched command).

    ``finished``: this rank ended normally, so first wait until every rank has — rank 0 hosts
    the rendezvous store, and when it left while another rank was still tearing down its gloo
    group, that rank aborted at exit ("terminate called without an active exception", seen
    once in CI). Not after an error: a rank that failed may never arrive."""
    if dist.is_available() and dist.is_initialized():
        if finished:
            try:
                barrier()
            except RuntimeError as err:  # a peer is gone: its own error says why
                log.warning("rank %d: not every rank reached the end (%s)", rank(),
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_writer() -> bool:
    """Rank 0 writes every file (checkpoints, models, reports, the run store); others wait."""
    return rank() == 0


def device() -> torch.device:
    """Where this rank trains: its GPU under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def shard(indices: Tensor, part: int, parts: int) -> Tensor:
    """Share ``part`` of ``parts`` (a rank's, of the world's) of one global batch of
    ``indices``, contiguous.

    Shares differ by at most one sample, the first ranks taking the larger ones, so rank 0
    always has one whenever the batch is not empty.
    """
    return torch.tensor_split(indices, parts)[part]


def wrap(model: nn.Module) -> nn.Module:
    """``model`` under DistributedDataParallel when several ranks train, else ``model``.

    DDP broadcasts rank 0's parameters and buffers (masks included) when it wraps, and rank 0's
    buffers before every forward pass; it averages gradients during backward.
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device()] if device().type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _state_tensors(model: nn.Module) -> list[Tensor]:
    tensors = [p.data for p in model.parameters()]
    tensors += [b for b in model.buffers() if b is not None]
    return tensors


@torch.no_grad()
def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer (masks, BatchNorm statistics) with rank ``src``'s.

    Tensors are sent flat, one message per dtype, from this rank's device (nccl sends GPU
    tensors only, so a model on the CPU is sent through the GPU); a bool mask travels as bytes.
    """
    if not active():
        return
    groups: dict[torch.dtype, list[Tensor]] = {}
    for tensor in _state_tensors(model):
        groups.setdefault(tensor.dtype, []).append(tensor)
    for dtype, tensors in groups.items():
        flat = torch.cat([t.reshape(-1).to(device()) for t in tensors])
        wire = flat.view(torch.uint8) if dtype == torch.bool else flat
        dist.broadcast(wire, src)
        offset = 0
        for tensor in tensors:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def model_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter's and buffer's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        flat = tensor.detach().contiguous().cpu()
        digest.update(f"{name}{flat.dtype}{list(flat.shape)}".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _ranks_differing(value: Any) -> int:
    """How many ranks hold a JSON ``value`` other than rank 0's (the same count on all)."""
    differs = torch.tensor([float(value != broadcast_json(value))], device=device())
    dist.all_reduce(differs)
    return int(differs.item())


def check_identical(model: nn.Module, what: str) -> None:
    """Raise :class:`RankMismatch` on every rank unless all ranks hold bit-identical models."""
    if not active():
        return
    differing = _ranks_differing(model_digest(model))
    if differing:
        raise RankMismatch(
            f"{what}: {differing} of {world_size()} ranks hold a model that differs "
            "from rank 0's; a decision was not shared (please report this with the recipe)"
        )


def adopt_writer_model(model: nn.Module, what: str) -> None:
    """Make every rank hold rank 0's model after a pruning step.

    Shapes must already agree (structured pruning decides them on every rank from the same
    weights and data); if they do not, every rank raises :class:`RankMismatch` rather than
    train different models. The values — weights, masks, statistics — are then rank 0's.
    """
    if not active():
        return
    shapes = [[name, list(t.shape)] for name, t in [*model.named_parameters(),
                                                    *model.named_buffers()]]
    differing = _ranks_differing(shapes)
    if differing:
        raise RankMismatch(
            f"{what}: ranks chose different structures ({differing} differ from rank "
            "0); run structured pruning in one process or report this with the recipe"
        )
    broadcast_module(model)


def all_sum(values: Sequence[float]) -> list[float]:
    """``values`` summed element-wise over every rank (float64)."""
    if not active():
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def _broadcast_bytes(data: bytes | None, src: int = 0) -> bytes | None:
    """Rank ``src``'s bytes (None stays None) on every rank; other ranks pass anything."""
    here = device()
    size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=here)
    dist.broadcast(size, src)
    if size.item() < 0:
        return None
    if rank() == src:
        buffer = torch.frombuffer(bytearray(data or b""), dtype=torch.uint8).to(here)
    else:
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=here)
    if buffer.numel():
        dist.broadcast(buffer, src)
    return bytes(buffer.cpu().numpy().tobytes())


def broadcast_json(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s JSON-able ``value`` on every rank (JSON, never pickle: nothing received
    can run code)."""
    if not active():
        return value
    text = json.dumps(value, allow_nan=True, default=str) if rank() == src else None
    received = _broadcast_bytes(text.encode() if text is not None else None, src)
    return json.loads(received.decode()) if received is not None else None


def on_writer(function: Callable[[], Any]) -> Any:
    """Run ``function`` on rank 0 only and return its JSON-able result on every rank.

    If it raises on rank 0, rank 0 raises that error and the others :class:`WriterFailed`
    with its message, so no rank waits forever for a result that will not come.
    """
    if not active():
        return function()
    if is_writer():
        try:
            result = function()
        except Exception as err:
            broadcast_json({"error": str(err).splitlines()[0] if str(err) else repr(err)})
            raise
        broadcast_json({"value": result})
        return result
    message = broadcast_json(None)
    if "error" in message:
        raise WriterFailed(message["error"])
    return message["value"]


def measured_on_writer(measure: Callable[[], T], to_json: Callable[[T], Any],
                       from_json: Callable[[Any], T]) -> T:
    """``measure()`` in one process; under torchrun, on rank 0 alone while the others wait,
    and every rank gets rank 0's result (through ``to_json``/``from_json``).

    Why: a timing steers a decision (the channel counts a latency table picks, the step a
    latency budget keeps), and ranks timing at once, on cores they share, measure differently
    and would decide differently, then train models DDP cannot pair. All ranks call this
    together.
    """
    if not active():
        return measure()
    return from_json(on_writer(lambda: to_json(measure())))


def read_on_writer(path: str | Path) -> bytes | None:
    """The bytes of ``path`` as rank 0 sees it (None if it is not a file), on every rank."""
    def read() -> bytes | None:
        return Path(path).read_bytes() if Path(path).is_file() else None

    if not active():
        return read()
    return _broadcast_bytes(read() if is_writer() else None)


def torchrun_argv(nproc: int, command: Sequence[str]) -> list[str]:
    """The command that runs ``python -m prunekit <command>`` on ``nproc`` local workers.

    >>> torchrun_argv(2, ["run", "r.yaml"])[1:6]
    ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2']
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(nproc), "-m", "prunekit", *command]
