"""Shared plumbing for benchmark scripts: Markdown tables on stdout, JSON results on disk.

Timing itself is :mod:`prunekit.latency` (round-robin, medians), the same code the reports use.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A GitHub-flavoured Markdown table on stdout (the script's output *is* its report)."""
    text = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(text[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in text[1:]:
        print(line(r))


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine it was measured on."""
    from prunekit.io import write_text_atomic

    document = {
        "benchmark": name,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")
    return path
