"""What ``compress`` writes: the model it chose, the report of every step, the path's table.

``report.{json,md,csv,html}`` are the usual comparison table (:mod:`prunekit.report`) with one
row per step and the uniform baseline; ``compress.md`` is the path to the target — per step the
budget as measured and as estimated, the predicted and the measured validation drop, the test
metric, the MACs and measured latency ratios (with the run's noise band), the Pareto front and
the allocation each step chose (:mod:`.choose`; the probe scores are in the JSON report) and
the verdict — and ``pareto.png`` plots cost against quality. The run lands in the run store
with its sensitivity rows, so the dashboard shows the curves beside the steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prunekit.compress.run import CompressResult
from prunekit.io import atomic_write, write_text_atomic
from prunekit.report import write_report
from prunekit.runs import fingerprint_of, record_run
from prunekit.sensitivity import headline, sensitivity_table

Row = dict[str, Any]


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def path_table(result: CompressResult) -> str:
    """The Markdown table of the path: one line per row of ``result``.

    >>> from prunekit.sensitivity import Sensitivity
    >>> s = Sensitivity("structured", "l2", "classification", "cross_entropy", {}, [], "", 0, 1)
    >>> row = {"name": "dense", "budget_fraction": 1.0, "estimated_fraction": 1.0,
    ...        "predicted_drop": 0.0, "drop": 0.0, "val_accuracy": 0.9, "accuracy": 0.91,
    ...        "macs_ratio": 1.0, "speedup_text": "1.00x (within noise)", "pareto": True,
    ...        "chosen": False}
    >>> path_table(CompressResult([row], None, False, "v", s)).splitlines()[2][:49]
    '| dense | — | 1.000 | 1.000 | 0.00 | 0.00 | 90.00'
    """
    metric, scale, unit = headline(result.sensitivity.task)
    header = ["step", "from", "budget (measured)", "estimated", f"predicted drop ({unit})",
              f"val drop ({unit})", f"val {metric}", f"test {metric}", "MACs ÷", "speed-up",
              "allocation", "Pareto", "chosen"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        cells = [row["name"], row.get("after") or "—",
                 _cell(row.get("budget_fraction", math.nan)), _cell(row["estimated_fraction"]), _cell(row["predicted_drop"], 2),
                 _cell(row["drop"], 2), _cell(scale * row[f"val_{metric}"], 2),
                 _cell(scale * row[metric], 2), _cell(row.get("macs_ratio", math.nan), 2) + "×",
                 row.get("speedup_text", "—"), row.get("allocation", "—"),
                 "●" if row.get("pareto") else "",
                 "✓" if row.get("chosen") else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_plot(result: CompressResult) -> bytes:
    """PNG: validation quality against the budget's measured fraction, steps and uniform."""
    from prunekit.report.plots import _png, plt

    metric, scale, _ = headline(result.sensitivity.task)
    figure, axis = plt.subplots(figsize=(5.6, 4.0))
    steps = [r for r in result.rows if r["name"] != "uniform"
             and math.isfinite(r.get("budget_fraction", math.nan))]
    kept = [r for r in steps if r["name"] in result.models or not result.models]
    over = [r for r in steps if r not in kept]  # over the bound: reported, then retried
    axis.plot([r["budget_fraction"] for r in kept], [scale * r[f"val_{metric}"] for r in kept],
              marker="o", label="compress steps")
    if over:
        axis.scatter([r["budget_fraction"] for r in over],
                     [scale * r[f"val_{metric}"] for r in over], marker="x", color="C1",
                     label="over the bound (not kept)", zorder=3)
    for row in result.rows:
        if row["name"] == "uniform" and math.isfinite(row.get("budget_fraction", math.nan)):
            axis.scatter([row["budget_fraction"]], [scale * row[f"val_{metric}"]], marker="s",
                         color="C3", label="uniform, same budget", zorder=3)
    axis.set_xlabel("budget used (fraction of dense, measured)")
    axis.set_ylabel(f"validation {metric}")
    axis.legend(fontsize=8)
    return _png(figure)


def write_compress_report(
    result: CompressResult, out_dir: str | Path, *, title: str, command: dict[str, Any]
) -> dict[str, Path]:
    """Write the chosen model, the reports and the plot; record the run; return the paths."""
    from prunekit.modes import eval_mode
    from prunekit.saving import save

    out = Path(out_dir)
    paths = {"model": out / "model.safetensors", "md": out / "compress.md",
             "plot": out / "pareto.png"}
    with eval_mode(result.model):
        save(result.model, paths["model"])
    rows = [{k: v for k, v in row.items() if k != "speedup_text"} for row in result.rows]
    write_report(rows, out, title=title, meta={"compress": command, "verdict": result.verdict,
                                                "noise": result.noise})
    write_text_atomic(paths["md"], f"# {title}\n\n{path_table(result)}\n{result.noise}; "
                      f"the chosen step is saved as model.safetensors.\n\n**{result.verdict}**\n\n"
                      f"## Sensitivity\n\n{sensitivity_table(result.sensitivity)}")
    with atomic_write(paths["plot"]) as temporary:
        temporary.write_bytes(pareto_plot(result))
    record_run(out, "compress", command, fingerprint_of([title, command]), rows, title=title,
               sensitivity=result.sensitivity.rows("dense"))
    return paths
