"""Epoch time of data-parallel training: one process against two, on LeNet-300-100 and
ResNet-20 (MNIST-5k, 4,000 training digits, global batch 64).

Every run goes through torchrun (``--standalone``), as a user's would, and trains with
:func:`prunekit.train.fit`; each configuration uses the same cores in all (``--cores``, the
machine's by default): one process with all of them as torch threads, or two with half each.
The rows report the median epoch (the first one, which warms up, is left out when there are
several), samples per second and the test accuracy rank 0 measures afterwards.

What the numbers can show on one machine: the cost of the gradient exchange (gloo over
loopback) against splitting the batch, i.e. whether DDP's overhead is small for a model of
this size. What they cannot show: scaling across machines (network bandwidth and latency are
not loopback's) or on GPUs (nccl); two processes sharing two cores can at best tie one process
using both as threads, so a speed-up above 1 is not expected here.

    .venv/bin/python benchmarks/distributed.py            # full run, writes results/distributed.json
    .venv/bin/python benchmarks/distributed.py --quick    # smoke test (writes nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS: dict[str, dict[str, Any]] = {
    "lenet300": {},
    "resnet20": {"in_channels": 1},
}


class EpochClock:
    """A fit callback noting the wall time of every epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_fit_start(self, model: Any, optimizer: Any) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, model: Any) -> None:
        now = time.perf_counter()
        self.times.append(now - self._start)
        self._start = now


def worker(model_name: str, epochs: int, samples: int | None, threads: int, out: Path) -> None:
    """One rank: train, then (rank 0) evaluate and write the timings."""
    import torch

    from prunekit import distributed
    from prunekit.data import load_dataset
    from prunekit.evaluate import evaluate_accuracy
    from prunekit.models import build_model
    from prunekit.train import fit

    torch.set_num_threads(threads)
    distributed.init_from_env()
    data = load_dataset("mnist5k", **({"n_samples": samples} if samples else {}))
    torch.manual_seed(0)
    model = build_model(model_name, **MODELS[model_name])
    clock = EpochClock()
    fit(model, data.x_train, data.y_train, epochs=epochs, lr=1e-3, batch_size=64,
        callbacks=[clock], progress=False)
    if distributed.is_writer():
        accuracy = evaluate_accuracy(model, data.x_test, data.y_test)["accuracy"]
        record = {"epoch_s": clock.times, "accuracy": accuracy, "samples": len(data.x_train),
                  "world_size": distributed.world_size(), "threads": threads}
        out.write_text(json.dumps(record))
    distributed.shutdown(finished=True)


def launch(model_name: str, nproc: int, cores: int, epochs: int, samples: int | None) -> dict:
    """Run one configuration under torchrun and return rank 0's record."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", str(nproc), __file__, "--worker", model_name,
                   "--epochs", str(epochs), "--threads", str(max(1, cores // nproc)),
                   "--out", str(out), *(["--samples", str(samples)] if samples else [])]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 600 digits")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs, args.samples, args.threads, args.out)
        return

    from common import machine_line, print_table, write_results

    epochs, samples = (1, 600) if args.quick else (args.epochs, None)
    rows = []
    for name in MODELS:
        for nproc in (1, 2):
            record = launch(name, nproc, args.cores, epochs, samples)
            timed = record["epoch_s"][1:] or record["epoch_s"]
            epoch_s = statistics.median(timed)
            rows.append({"model": name, "processes": nproc, "threads_each": record["threads"],
                         "epoch_s": epoch_s, "samples_per_s": record["samples"] / epoch_s,
                         "accuracy": record["accuracy"], "epochs": epochs})
    print(machine_line())
    print(f"median epoch of {epochs} ({'quick: 600 digits' if args.quick else 'MNIST-5k'})")
    print_table(
        ["model", "processes × threads", "epoch s", "samples/s", "vs 1 process", "accuracy %"],
        [[r["model"], f"{r['processes']} × {r['threads_each']}", f"{r['epoch_s']:.2f}",
          f"{r['samples_per_s']:.0f}",
          f"{rows[i - r['processes'] + 1]['epoch_s'] / r['epoch_s']:.2f}×",
          f"{100 * r['accuracy']:.2f}"] for i, r in enumerate(rows)],
    )
    if not args.quick:
        print(f"wrote {write_results('distributed', {'cores': args.cores, 'rows': rows})}")


if __name__ == "__main__":
    main()
