"""Count what generated hostile input does to prunekit: per category, how many cases were
refused cleanly, accepted rightly, or gave a traceback, a hang, executed code, grew memory past
1 GiB or were wrongly accepted.

The cases are those of the fuzz tests (``tests/fuzz``: seeded mutations of valid recipes, YAML
grammars, tampered model files, header bit flips, memory bombs). Each category runs in a worker
process that this script supervises, so that code which hangs inside C, or allocates gigabytes,
is killed and counted rather than taking the machine down: a case still running after 60 s is a
hang (the worker's own alarm catches most at 30 s), and the worker runs under a 12 GiB address
space limit (Linux: ``prlimit``).

It uses only what every prunekit offers (the command line, ``prunekit.save``/``load``,
``save_state_dict``/``load_state_dict``), so it counts older code too::

    .venv/bin/python benchmarks/fuzz.py                      # this checkout
    git archive e4cfb01 src | tar -x -C /tmp/old             # the code before issue 8
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/fuzz.py --name fuzz_e4cfb01
    .venv/bin/python benchmarks/fuzz.py --quick              # smoke test (a tenth of the cases)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common import print_table, write_results
from fuzz.harness import STATUSES
from fuzz.model_cases import peak_rss, reset_peak_rss

CATEGORIES = ("recipes", "files", "bitflips", "bombs")
KILL_SECONDS = 60
MEMORY_LIMIT = 12 * 2**30
GREW_TOO_MUCH = 2**30


def _recipe_work(seed: int, scale: float, folder: Path) -> list[Any]:
    from fuzz.harness import run_recipe_case
    from fuzz.recipe_cases import recipe_cases
    from typer.testing import CliRunner

    from prunekit.cli import app

    runner = CliRunner()
    trust_flag = "--trust-code" in runner.invoke(app, ["run", "--help"]).output

    def invoke(args: list[str]) -> Any:
        return runner.invoke(app, args)

    return [
        (lambda c=case, i=i: run_recipe_case(c, folder / str(i), invoke, trust_flag))
        for i, case in enumerate(recipe_cases(seed, scale))
    ]


def _file_work(kind: str, seed: int, scale: float, folder: Path) -> list[Any]:
    import torch
    from fuzz.harness import reference, run_model_case
    from fuzz.model_cases import (
        ModelCase,
        bombs,
        header_bit_flips,
        originals,
        resigner,
        tampered_files,
    )

    import prunekit
    from prunekit.sparse.storage import load_state_dict, save_state_dict

    canary, path = folder / "canary", folder / "case.safetensors"
    if kind == "bombs":  # weight files: load_state_dict is the path that decodes them


        def small() -> bytes:
            w = torch.zeros(64)
            w[::16] = 1.0
            return save_state_dict({"w": w}, folder / "small.safetensors").read_bytes()

        return [(lambda c=c: run_model_case(c, path, canary, load_state_dict, None))
                for c in bombs(small, seed)]  # fmt: skip
    files, refs = {}, {}
    for name, (model, example, options) in originals().items():
        saved = prunekit.save(model, folder / f"{name}.safetensors", **options)
        files[name], refs[name] = saved.read_bytes(), reference(prunekit.load, saved, example)
    if kind == "files":
        cases = tampered_files(files, resigner(folder), canary, seed, scale)
    else:
        cases = [
            ModelCase(f"flip-{name}#{i}", "bitflip", name, flipped, "reject")
            for name, data in files.items()
            for i, flipped in enumerate(header_bit_flips(data, round(500 * scale), seed))
        ]
    return [(lambda c=c: run_model_case(c, path, canary, prunekit.load, refs[c.original]))
            for c in cases]  # fmt: skip


def worker(kind: str, seed: int, scale: float, start: int) -> None:
    """Run cases ``start``… of ``kind``, one JSON line per outcome on stdout."""
    with tempfile.TemporaryDirectory(prefix="prunekit-fuzz-") as tmp:
        folder = Path(tmp)
        work = (_recipe_work(seed, scale, folder) if kind == "recipes"
                else _file_work(kind, seed, scale, folder))  # fmt: skip
        print(json.dumps({"total": len(work)}), flush=True)
        for index in range(start, len(work)):
            reset_peak_rss()
            before = peak_rss()
            try:
                outcome = work[index]()
                record = {"case": outcome.case, "category": outcome.category,
                          "status": outcome.status, "detail": outcome.detail}  # fmt: skip
            except MemoryError:
                record = {"case": f"#{index}", "category": kind, "status": "memory", "detail": ""}
            except Exception as err:  # noqa: BLE001  (an error in the harness itself)
                record = {"case": f"#{index}", "category": kind, "status": "traceback",
                          "detail": f"harness: {type(err).__name__}: {err}"}  # fmt: skip
            record.update(index=index, grew=peak_rss() - before)
            print(json.dumps(record), flush=True)


def supervise(kind: str, seed: int, scale: float) -> list[dict[str, Any]]:
    """Run ``kind``'s cases in workers; a case that outlives :data:`KILL_SECONDS` is a hang."""
    records: list[dict[str, Any]] = []
    start, total = 0, None
    while total is None or start < total:
        command = [sys.executable, __file__, "--worker", kind, "--seed", str(seed),
                   "--scale", str(scale), "--start", str(start)]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                   env=os.environ.copy())  # fmt: skip
        resource.prlimit(process.pid, resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + KILL_SECONDS * 5  # generating the cases comes first
        while True:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                process.kill()
                records.append({"case": f"{kind}#{start}", "category": kind, "status": "hang",
                                "index": start, "grew": 0, "detail": "killed"})  # fmt: skip
                start += 1
                break
            line = process.stdout.readline()
            if not line:  # the worker died (a crash, or the memory limit)
                process.wait()
                if total is not None and start < total:
                    records.append({"case": f"{kind}#{start}", "category": kind,
                                    "status": "memory" if process.returncode else "traceback",
                                    "index": start, "grew": 0,
                                    "detail": f"worker exit {process.returncode}"})  # fmt: skip
                    start += 1
                break
            record = json.loads(line)
            if "total" in record:
                total = record["total"]
            else:
                if record["grew"] > GREW_TOO_MUCH:  # also when the alarm caught it allocating
                    record["status"] = "memory"
                records.append(record)
                start = record["index"] + 1
            deadline = time.monotonic() + KILL_SECONDS
        process.stdout.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="fuzz", help="results/<name>.json")
    parser.add_argument("--only", choices=CATEGORIES, nargs="+", default=list(CATEGORIES))
    parser.add_argument("--worker", choices=CATEGORIES, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seed, args.scale, args.start)
        return
    import prunekit

    scale = 0.1 if args.quick else args.scale
    records = [r for kind in args.only for r in supervise(kind, args.seed, scale)]
    statuses = (*STATUSES, "memory")
    table: dict[str, Counter[str]] = {}
    for record in records:
        table.setdefault(record["category"], Counter())[record["status"]] += 1
    print(f"prunekit from {Path(prunekit.__file__).parent}")
    print_table(
        ["category", "cases", *statuses],
        [[c, sum(n.values()), *(n[s] for s in statuses)] for c, n in table.items()],
    )
    findings = [r for r in records if r["status"] not in ("refused", "accepted")]
    for record in findings[:40]:
        print(f"  {record['status']:>16}  {record['case']}: {record['detail'][:150]}")
    path = write_results(args.name, {
        "prunekit": str(Path(prunekit.__file__).parent), "seed": args.seed, "scale": scale,
        "counts": {c: dict(n) for c, n in table.items()}, "findings": findings,
    })  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
