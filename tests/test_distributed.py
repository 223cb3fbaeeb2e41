"""Two gloo processes on one machine, spawned here with torchrun's environment: the same
training as one process, identical on every rank, and resumable after a rank is killed; and
what timing decides (latency tables, timed comparisons) is rank 0's measurement on every rank."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunekit import distributed
from prunekit.data import load_dataset
from prunekit.evaluate import evaluate_accuracy, prunable_sparsity
from prunekit.models import build_model

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMING_WORKER = Path(__file__).with_name("timing_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, *args: str, world: int = 2, timeout: float = 300,
            backend: str = "gloo", worker: Path = WORKER) -> list[int]:
    """Start ``world`` ranks of the worker; when one dies, stop the rest (as torchrun does),
    after a grace period in which they may fail by themselves (gloo sees the peer gone), so
    what a survivor writes before its next collective is deterministic."""
    port = str(_free_port())
    procs = []
    for r in range(world):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1", distributed.BACKEND_ENV: backend}
        with open(out / f"rank{r}.log", "ab") as log:  # read it when a test fails
            procs.append(subprocess.Popen([sys.executable, str(worker), str(out), *args],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.returncode not in (None, 0) for p in procs):
            deadline = min(deadline, time.monotonic() + 30)
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    return [p.returncode for p in procs]


@pytest.fixture(scope="module")
def one_process() -> dict:
    return _reference()


def _reference() -> dict:
    """The same training in this process: no process group, the behaviour of one process."""
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return worker.train()


def _evaluate(state: dict) -> tuple[float, float]:
    data = load_dataset("digits")
    model = build_model("mlp", in_features=64, hidden=(64, 32))
    from prunekit.masks import set_mask

    for key, mask in state.items():
        if key.endswith("_mask"):
            module, _, buffer = key.rpartition(".")
            set_mask(model.get_submodule(module), buffer.removesuffix("_mask"), mask)
    model.load_state_dict(state)
    accuracy = evaluate_accuracy(model, data.x_test, data.y_test)["accuracy"]
    return accuracy, prunable_sparsity(model)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ranks(out: Path) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", map_location="cpu", weights_only=True)
            for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("killed_rank", [0, 1])
def test_two_ranks_killed_and_resumed_match_each_other_and_one_process(
    tmp_path: Path, killed_rank: int, one_process: dict
) -> None:
    # the rank is killed at the end of epoch 1 (0-based), before that epoch's checkpoint:
    # the writer leaves epoch 0's; a non-writer dies after rank 0 has passed that point, so
    # rank 0 writes epoch 1's and waits in the barrier until it is stopped
    codes = _launch(tmp_path, "1", str(killed_rank))
    assert codes[killed_rank] == -9 and codes[1 - killed_rank] != 0
    assert not list(tmp_path.glob("rank*.pt"))
    next_epoch = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["next_epoch"]
    assert next_epoch == (1 if killed_rank == 0 else 2)

    assert _launch(tmp_path) == [0, 0]
    ranks = _ranks(tmp_path)
    resumed = list(range(next_epoch, 4))
    assert [r["epochs"] for r in ranks] == [resumed, resumed]  # resumed, not restarted
    assert ranks[0]["world_size"] == 2
    assert ranks[0]["after_pruning"] is not None
    assert ranks[0]["pruned_gradients"] == ranks[1]["pruned_gradients"] == 0
    assert _same(ranks[0]["after_pruning"], ranks[1]["after_pruning"])  # bit-identical
    assert _same(ranks[0]["final"], ranks[1]["final"])
    assert ranks[0]["losses"] == ranks[1]["losses"]

    one = one_process
    assert one["world_size"] == 1
    # the same global batches: the loss curves agree up to the order of float sums
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"]), torch.tensor(one["losses"]),
                               rtol=2e-3, atol=0)
    accuracy2, sparsity2 = _evaluate(ranks[0]["final"])
    accuracy1, sparsity1 = _evaluate(one["final"])
    assert accuracy1 > 0.9
    assert abs(accuracy2 - accuracy1) <= 0.01
    assert sparsity2 == sparsity1 == pytest.approx(0.85, abs=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="the nccl path needs two GPUs")
def test_nccl_ranks_on_two_gpus_agree_with_one_process(tmp_path: Path, one_process) -> None:
    assert _launch(tmp_path, backend="nccl") == [0, 0]
    ranks = _ranks(tmp_path)
    assert _same(ranks[0]["final"], ranks[1]["final"])
    assert _same(ranks[0]["after_pruning"], ranks[1]["after_pruning"])
    accuracy2, sparsity2 = _evaluate(ranks[0]["final"])
    accuracy1, sparsity1 = _evaluate(one_process["final"])
    assert abs(accuracy2 - accuracy1) <= 0.01 and sparsity2 == sparsity1


def test_backend_is_gloo_without_gpus_and_can_be_chosen(monkeypatch) -> None:
    if not torch.cuda.is_available():
        assert distributed.backend() == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "nccl")
    assert distributed.backend() == "nccl"
    monkeypatch.setenv(distributed.BACKEND_ENV, "mpi")
    with pytest.raises(ValueError, match="choose gloo or nccl"):
        distributed.backend()


def test_doctests() -> None:
    assert doctest.testmod(distributed).failed == 0


def test_one_process_needs_no_process_group() -> None:
    assert not distributed.launched() and not distributed.active()
    assert distributed.read_on_writer("/nonexistent/file") is None
    distributed.barrier()  # nothing to wait for


@pytest.mark.parametrize("size", [64, 37, 1])
def test_shards_partition_each_global_batch_and_rank_0_never_starves(size: int) -> None:
    batch = torch.randperm(100)[:size]
    for world in (1, 2, 3, 8):
        shares = [distributed.shard(batch, r, world) for r in range(world)]
        assert torch.equal(torch.cat(shares), batch)  # in order, nothing lost or repeated
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert len(shares[0]) >= 1


def test_torchrun_argv_runs_prunekit_as_a_module() -> None:
    argv = distributed.torchrun_argv(3, ["run", "r.yaml", "--out", "o"])
    assert argv[0] == sys.executable
    assert argv[argv.index("--nproc-per-node") + 1] == "3"
    assert argv[-6:] == ["-m", "prunekit", "run", "r.yaml", "--out", "o"]


def test_timing_decisions_are_rank_zeros_on_every_rank(tmp_path: Path) -> None:
    """A latency table and a timed comparison steer structured pruning and compress; each rank
    measuring its own (on cores they share) would choose different structures."""
    assert _launch(tmp_path, worker=TIMING_WORKER, timeout=120) == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["table"]["layers"] and ranks[0]["times"]["times"]["dense"]
    assert ranks[1] == ranks[0]  # to the last digit: rank 0's timings, not rank 1's own
