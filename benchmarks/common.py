"""Shared plumbing for benchmark scripts: Markdown tables on stdout, JSON results on disk.

Timing itself is :mod:`prunekit.latency` (round-robin, medians, noise bands), the same code the
reports use. Every results file records the machine (:func:`prunekit.machine.machine_record`:
CPU model, features, threads) and which sparse kernel paths it runs, because a timing is only
comparable with another from the same kind of CPU.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.machine import machine_record
from prunekit.sparse.kernels import default_kernel_path, kernel_paths

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


def machine() -> dict[str, Any]:
    """The machine record of every results file, with the sparse kernel paths it runs."""
    return {
        **machine_record(),
        "sparse_kernel_paths": [name for name, runs in kernel_paths().items() if runs],
        "sparse_kernel_default_path": default_kernel_path(),
    }


def machine_line() -> str:
    """One line naming the machine, for the top of a benchmark's output."""
    m = machine()
    bf16 = "native bf16" if m["native_bf16"] else "no native bf16"
    return (
        f"CPU: {m['cpu_model']} ({m['logical_cpus']} logical CPUs; "
        f"{' '.join(m['cpu_features']) or 'no features read'}; {bf16}); "
        f"{m['threads']} torch threads; sparse kernel path {m['sparse_kernel_default_path']}"
    )


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine it was measured on."""
    from prunekit.io import write_text_atomic

    document = {"benchmark": name, "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")
    return path
