import time

import pytest

from prunekit.sparse.timing import interleaved_medians, repeats_for


def test_medians_rank_alternatives_and_run_each_the_right_number_of_times() -> None:
    calls = {"fast": 0, "slow": 0}

    def run(name: str, seconds: float) -> None:
        calls[name] += 1
        time.sleep(seconds)

    medians = interleaved_medians(
        {"fast": lambda: run("fast", 0.0), "slow": lambda: run("slow", 0.003)}, repeats=4, warmup=2
    )
    assert calls == {"fast": 6, "slow": 6}
    assert medians["slow"] >= 3.0 > medians["fast"]


def test_every_candidate_takes_every_position_in_turn() -> None:
    order: list[str] = []
    interleaved_medians({k: (lambda k=k: order.append(k)) for k in "abc"}, repeats=3, warmup=0)
    assert order == list("abcbcacab")


def test_repeats_are_bounded() -> None:
    assert repeats_for(0.0, budget_ms=10) == 25
    assert repeats_for(2.0, budget_ms=20) == 10
    assert repeats_for(1000.0, budget_ms=20, low=3) == 3
    with pytest.raises(ValueError, match="repeats"):
        interleaved_medians({"a": lambda: None}, repeats=0)
