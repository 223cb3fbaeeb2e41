"""Choosing a step's allocation: the walk first, uniform last, duplicates dropped, the best
probe wins and a tie keeps the walk's."""

from __future__ import annotations

import pytest

from prunekit.compress.choose import candidate_plans, choose


def test_plans_run_from_the_walk_to_uniform_without_duplicates() -> None:
    alphas: list[float] = []

    def blend(alpha: float) -> tuple[int, ...]:
        alphas.append(alpha)
        return (8, 0) if alpha < 0.5 else (5, 3)

    plans = candidate_plans((8, 0), (4, 4), 5, blend)
    assert alphas == [0.25, 0.5, 0.75]
    assert [p.label for p in plans] == ["walk", "blend 0.50", "uniform"]  # 0.25 = the walk
    assert [p.removed for p in plans] == [(8, 0), (5, 3), (4, 4)]
    same = candidate_plans((8, 0), (8, 0), 3, lambda a: (8, 0))
    assert [p.label for p in same] == ["walk"]  # uniform and the blend equal the walk
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        candidate_plans((8, 0), (4, 4), 0, blend)


def test_the_best_probe_wins_and_a_tie_keeps_the_walk() -> None:
    plans = candidate_plans((8, 0), (4, 4), 2, lambda a: (6, 2))
    assert choose(plans, lambda removed: float(removed[1])).label == "uniform"
    assert [p.score for p in plans] == [0.0, 4.0]
    assert choose(plans, lambda removed: 1.0).label == "walk"
    single = candidate_plans((8, 0), (4, 4), 1, lambda a: (6, 2))
    assert choose(single, lambda removed: 1 / 0).label == "walk"  # one plan is not probed
