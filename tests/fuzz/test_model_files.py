"""≥150 generated tampered model files and header bit-flip sampling through ``prunekit.load``:
never a traceback, a hang or code run; never a file that loads as anything but what was saved
(unless an attacker wrote a whole, valid, allowlisted model); memory bombs refused before they
allocate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunekit
from prunekit.sparse.storage import save_state_dict

from .harness import counts, failures, reference, run_model_case
from .model_cases import bombs, header_bit_flips, originals, resigner, tampered_files


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict[str, bytes], dict]:
    folder = tmp_path_factory.mktemp("originals")
    files, refs = {}, {}
    for name, (model, example, options) in originals().items():
        path = prunekit.save(model, folder / f"{name}.safetensors", **options)
        files[name] = path.read_bytes()
        refs[name] = reference(prunekit.load, path, example)
    return folder, files, refs


def test_tampered_files_are_refused_or_load_exactly(saved, tmp_path: Path) -> None:
    _, files, refs = saved
    canary = tmp_path / "canary"
    cases = tampered_files(files, resigner(tmp_path), canary, seed=0)
    assert len(cases) >= 150
    outcomes = [run_model_case(c, tmp_path / "case.safetensors", canary, prunekit.load,
                               refs[c.original]) for c in cases]  # fmt: skip
    table = counts(outcomes)
    bad = failures(outcomes) + [o for o in outcomes if o.status == "unclear"]
    assert not bad, (table, bad[:10])
    assert table["crafted"]["refused"] >= 30  # every exploit graph among them is refused
    assert sum(t["refused"] for t in table.values()) >= 150


def test_header_bit_flips_are_refused_or_change_nothing(saved, tmp_path: Path) -> None:
    _, files, refs = saved
    outcomes = []
    for name, data in files.items():
        for flipped in header_bit_flips(data, 150, seed=len(name)):
            case = type("Flip", (), {"name": "flip", "category": "bitflip", "data": flipped,
                                     "expect": "reject"})()  # fmt: skip
            outcomes.append(
                run_model_case(
                    case,
                    tmp_path / "flip.safetensors",
                    tmp_path / "canary",
                    prunekit.load,
                    refs[name],
                )
            )
    bad = failures(outcomes) + [o for o in outcomes if o.status == "unclear"]
    assert len(outcomes) == 450 and not bad, (counts(outcomes), bad[:10])


BOMB_LOADER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from fuzz.model_cases import peak_rss, reset_peak_rss
from prunekit.sparse.storage import load_state_dict
for path in sys.argv[2:]:
    reset_peak_rss()
    before = peak_rss()
    try:
        load_state_dict(path)
        status = "accepted"
    except ValueError as err:
        status = "refused"
    print(json.dumps({"path": path, "status": status, "grew": peak_rss() - before}), flush=True)
"""


def test_memory_bombs_are_refused_before_allocating(tmp_path: Path) -> None:
    def small() -> bytes:
        w = torch.zeros(64)
        w[::16] = 1.0
        return save_state_dict(
            {"w": w}, tmp_path / "small.safetensors", format="bitmask"
        ).read_bytes()

    paths = []
    for case in bombs(small):
        path = tmp_path / f"{case.name}.safetensors"
        path.write_bytes(case.data)
        assert path.stat().st_size < 300_000  # kilobytes that declare gigabytes
        paths.append(str(path))
    tests = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", BOMB_LOADER, tests, *paths],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in results] == ["refused"] * len(paths), results
    assert max(r["grew"] for r in results) < 200 * 2**20, results  # peak RSS grew < 200 MB
