"""What-ifs on a finished run: one-shot prunings of copies of its baseline, measured as the
dashboard measures them (held-out accuracy, MACs, parameters, file size, latency, seconds).

    .venv/bin/python benchmarks/whatif.py runs/demo      # after `make demo`
    .venv/bin/python benchmarks/whatif.py runs/demo --quick

Prints a Markdown table and writes benchmarks/results/whatif.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prunekit.dashboard.whatif import parse_choice, try_choice
from prunekit.dashboard.workspace import Workspace
from prunekit.io import write_text_atomic

CHOICES = [
    ("structured 25 % (each group, l2)", {"granularity": "structured", "amount": 0.25}),
    ("structured 50 % (each group, l2)", {"granularity": "structured", "amount": 0.5}),
    ("structured 50 % (global, l2)", {"granularity": "structured", "amount": 0.5, "scope": "global"}),
    ("structured 75 % (each group, l2)", {"granularity": "structured", "amount": 0.75}),
    ("only group 1 at 50 % (l2)", {"granularity": "structured", "amounts": {"1": 0.5}}),
    ("unstructured 50 % (global, magnitude)", {"granularity": "unstructured", "amount": 0.5, "scope": "global"}),
    ("unstructured 90 % (global, magnitude)", {"granularity": "unstructured", "amount": 0.9, "scope": "global"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/demo"))
    parser.add_argument("--variant", default="baseline")
    parser.add_argument("--quick", action="store_true", help="two choices only (a smoke test)")
    args = parser.parse_args()
    workspace = Workspace([args.run_dir])
    runs = [r for r in workspace.runs() if r.get("status") == "finished"]
    if not runs:
        raise SystemExit(f"no finished run in {args.run_dir}; run `make demo` first")
    subject = workspace.subject(runs[0]["id"], args.variant)
    results = []
    for label, choice in CHOICES[:2] if args.quick else CHOICES:
        result = try_choice(subject, parse_choice(choice))
        results.append({"what_if": label, "choice": choice, **result})
    before = results[0]["before"]
    print(f"| what-if on {args.variant} | accuracy % ({results[0]['held_out']} held-out) | MACs "
          "| parameters | non-zero | file KB | latency ms (p50) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for label, m, seconds in [("as it is", before, None)] + [
            (r["what_if"], r["after"], r["seconds"]) for r in results]:
        print(f"| {label} | {100 * m['accuracy']:.2f} | {m['macs']:,} | {m['params']:,} | "
              f"{m['nonzero_params']:,} | {m['file_bytes'] / 1024:,.1f} | {m['latency_ms']:.3f} | "
              f"{'' if seconds is None else f'{seconds:.2f}'} |")
    out = Path(__file__).parent / "results" / "whatif.json"
    write_text_atomic(out, json.dumps({"run": runs[0]["title"], "variant": args.variant,
                                       "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
