"""≥150 generated recipes through the real command line: never a traceback, a hang, code run
without --trust-code, or a bad recipe accepted; every refusal one line naming the field."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from prunekit.cli import app

from .harness import counts, failures, run_recipe_case
from .recipe_cases import recipe_cases


def test_generated_recipes_are_refused_cleanly_or_accepted_rightly(tmp_path: Path) -> None:
    cases = recipe_cases(seed=0)
    assert len(cases) >= 150 and len({c.name for c in cases}) == len(cases)
    runner = CliRunner()
    outcomes = [
        run_recipe_case(case, tmp_path / str(i), lambda args: runner.invoke(app, args), True)
        for i, case in enumerate(cases)
    ]
    table = counts(outcomes)
    bad = [o for o in outcomes if o.status in ("unclear", *("traceback", "hang"))] + failures(
        outcomes
    )
    assert not bad, (table, sorted(set(bad), key=lambda o: o.case)[:10])
    assert sum(c["refused"] for c in table.values()) >= 150  # the generator mostly breaks things
    assert max(o.seconds for o in outcomes) < 15
