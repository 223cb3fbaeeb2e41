"""One rank of the distributed tests: gradual pruning of a small MLP on digits under
``prunekit.train.fit``, launched by tests/test_distributed.py with torchrun's environment (or
imported and run in one process for the reference).

``python distributed_worker.py OUT [KILL_EPOCH KILL_RANK]`` writes ``OUT/rank<r>.pt``: the weights and
masks right after the first pruning step, the final weights, the epochs this launch trained and
the loss history. Rank 0 writes ``OUT/checkpoint.pt`` after every epoch. With ``KILL_EPOCH``, rank ``KILL_RANK`` kills itself (SIGKILL) at that epoch's end, before
the epoch's checkpoint is written.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from prunekit import distributed
from prunekit.data import load_dataset
from prunekit.masks import masked_tensors
from prunekit.models import build_model
from prunekit.schedules import GradualPruning, agp
from prunekit.train import fit

EPOCHS = 4
BATCH = 64  # global; digits has 1,437 training samples, so the last batch is uneven


class Record:
    """Keeps the state after this launch's first pruning step and the epochs it trains."""

    def __init__(self, kill_epoch: int | None, kill_rank: int | None) -> None:
        self.after_pruning: dict[str, torch.Tensor] | None = None
        self.pruned_gradients = 0  # non-zero gradients of pruned weights, after DDP's average
        self.epochs: list[int] = []
        self.kill_epoch, self.kill_rank = kill_epoch, kill_rank

    def on_before_step(self, step, model, optimizer) -> None:
        for *_, tensor, mask in masked_tensors(model):
            self.pruned_gradients += int(torch.count_nonzero(tensor.grad[~mask]))
        # after this step's pruning (steps 5, 15, ..., 75) and its broadcast, before the update
        if step % 10 == 5 and step <= 75 and self.after_pruning is None:
            self.after_pruning = {k: v.clone() for k, v in model.state_dict().items()}

    def on_epoch_end(self, epoch, model) -> None:
        self.epochs.append(epoch)
        if epoch == self.kill_epoch and distributed.rank() == self.kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)


def train(
    checkpoint: Path | None = None, kill_epoch: int | None = None, kill_rank: int | None = None
) -> dict:
    """Train and return what a rank reports (see the module docstring)."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(64, 32))
    record = Record(kill_epoch, kill_rank)
    # 23 steps an epoch: pruning goes on in every epoch, so a resumed launch prunes too
    pruning = GradualPruning(agp(0.3, 0.85, begin_step=5, end_step=75, frequency=10))
    history = fit(model, data.x_train, data.y_train, epochs=EPOCHS, lr=1e-2,
                  batch_size=BATCH, seed=3,
                  callbacks=[pruning, record], checkpoint=checkpoint, progress=False)
    return {"after_pruning": record.after_pruning, "final": model.state_dict(),
            "epochs": record.epochs, "pruned_gradients": record.pruned_gradients,
            "losses": [e["loss"] for e in history.epochs],
            "world_size": distributed.world_size()}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    kill = [int(a) for a in sys.argv[2:4]] or [None, None]
    distributed.init_from_env(timeout_s=60)
    result = train(out / "checkpoint.pt", *kill)
    torch.save(result, out / f"rank{distributed.rank()}.pt")
    distributed.shutdown(finished=True)
