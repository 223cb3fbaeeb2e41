"""One rank of tests/test_distributed.py's timing test, launched with torchrun's environment:
a latency table and a timed comparison, written to ``OUT/rank<r>.json``.

``python timing_worker.py OUT``. Every rank must come back with rank 0's measurements: two
ranks timing by themselves would never agree to the last digit.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

from prunekit import distributed
from prunekit.compress.budget import time_models
from prunekit.structured.latency_table import measure_latency_table


def main() -> None:
    out = Path(sys.argv[1])
    distributed.init_from_env()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3)).eval()
    x = torch.randn(2, 3, 16, 16)
    table = measure_latency_table(model, x, configs=3, repeats=2)
    timed = time_models({"dense": model, "copy": copy.deepcopy(model)}, x, reference="dense",
                        budget_s=0.5)
    result = {"table": table.to_json(), "times": timed.to_json()}
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(result))
    distributed.shutdown(finished=True)


if __name__ == "__main__":
    main()
