"""compress on a small trained model: the budget is met as measured, the steps are honest, the
uniform baseline stands beside them, and an impossible bound is reported, not hidden."""

from __future__ import annotations

import copy
import itertools

import pytest

from prunekit.compress import Budget, Settings, compress
from prunekit.compress import session as session_module
from prunekit.evaluate import count_macs, count_params

FAST = {"steps": 2, "epochs": 1, "lr": 0.01, "latency_budget_s": 0.5}


def test_a_macs_budget_is_met_as_counted(trained) -> None:
    model, data = trained
    dense_macs = count_macs(model, data.x_train[:1])
    result = compress(copy.deepcopy(model), data, Budget("macs", 0.3), max_drop=3.0,
                      settings=Settings(**FAST), progress=False)
    assert result.met and result.verdict.startswith("met --target-macs 0.3")
    names = [r["name"] for r in result.rows]
    assert names[0] == "dense" and names[-1] == "uniform" and "step 1" in names
    chosen = next(r for r in result.rows if r["chosen"])
    assert count_macs(result.model, data.x_train[:1]) == chosen["macs"] <= 0.3 * dense_macs
    assert chosen["budget_fraction"] == chosen["macs"] / dense_macs and chosen["drop"] <= 3.0
    steps = [r for r in result.rows if r["name"].startswith("step")]
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert all(b["macs"] < a["macs"] for a, b in itertools.pairwise(steps))
    uniform = result.rows[-1]  # matched to the chosen step's counted MACs, not its estimate
    assert chosen["budget_fraction"] - 0.05 <= uniform["budget_fraction"]
    assert uniform["budget_fraction"] <= chosen["budget_fraction"] + 1e-9
    assert all(r["allocation"] in ("walk", "blend 0.50", "uniform") for r in steps)
    assert all(r["allocation"] in r["probes"] for r in steps)
    assert all(r["latency_ms"] > 0 for r in result.rows) and "noise band" in result.noise
    assert any(r["pareto"] for r in result.rows)
    assert [c.target for c in result.sensitivity.curves] == ["net.1", "net.3"]


def test_a_params_budget_with_distillation(trained) -> None:
    model, data = trained
    result = compress(copy.deepcopy(model), data, Budget("params", 0.5), max_drop=5.0,
                      settings=Settings(**FAST, distill=True, uniform=False), progress=False)
    assert result.met
    assert count_params(result.model)[0] <= 0.5 * count_params(model)[0]


def test_an_impossible_bound_says_so_and_keeps_the_best(trained) -> None:
    model, data = trained
    result = compress(copy.deepcopy(model), data, Budget("macs", 0.02), max_drop=0.5,
                      settings=Settings(**{**FAST, "epochs": 0}, uniform=False), progress=False)
    assert not result.met
    assert result.verdict.startswith("could not meet --target-macs 0.02 within 0.5 pt")
    chosen = next(r for r in result.rows if r["chosen"])
    assert chosen["drop"] <= 0.5
    assert result.rows[-1]["drop"] > 0.5 and not result.rows[-1]["chosen"]
    assert count_macs(result.model, data.x_train[:1]) == chosen["macs"]


def test_bad_settings_fail_before_any_work(trained) -> None:
    model, data = trained
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        Budget("macs", 1.5)
    with pytest.raises(ValueError, match="unknown budget"):
        Budget("flops", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        compress(model, data, Budget("macs", 0.5), max_drop=1.0, settings=Settings(steps=0))


def test_each_step_prunes_to_the_candidate_its_probe_scores_best(trained, monkeypatch) -> None:
    model, data = trained
    probed: list[dict[str, int]] = []

    def probe(self, model, removed, sizes, index):  # favour sparing the first hidden layer
        probed.append(dict(removed))
        return -removed["net.1"]

    monkeypatch.setattr(session_module.Session, "probe", probe)
    result = compress(copy.deepcopy(model), data, Budget("macs", 0.4), max_drop=50.0,
                      settings=Settings(**{**FAST, "steps": 1}, candidates=3, uniform=False),
                      progress=False)
    assert 2 <= len(probed) <= 3  # walk, blend, uniform (a duplicate dropped)
    spared = min(p["net.1"] for p in probed)
    assert result.model.net[1].out_features == 48 - spared
    step = result.rows[1]
    assert step["probes"].count(",") == len(probed) - 1
    before = len(probed)
    only_walk = compress(copy.deepcopy(model), data, Budget("macs", 0.4), max_drop=50.0,
                         settings=Settings(**{**FAST, "steps": 1}, candidates=1, uniform=False),
                         progress=False)
    assert len(probed) == before  # one candidate is pruned unprobed
    assert only_walk.rows[1]["allocation"] == "walk"
    assert only_walk.rows[1]["probes"] == ""


def test_a_step_over_the_bound_is_retried_half_as_far_from_the_last_step_within_it(
        trained, monkeypatch) -> None:
    model, data = trained
    example = data.x_train[:1]
    dense_macs = count_macs(model, example)

    def score(self, net):  # validation accuracy falls one point per 1 % of MACs below 0.36
        return 1.0 - max(0.0, 0.36 - count_macs(net, example) / dense_macs)

    monkeypatch.setattr(session_module.Session, "validation_score", score)
    result = compress(copy.deepcopy(model), data, Budget("macs", 0.3), max_drop=1.0,
                      settings=Settings(**{**FAST, "epochs": 0}, uniform=False), progress=False)
    steps = result.rows[1:]
    by = {r["name"]: r for r in result.rows}
    assert [r["after"] for r in steps] == ["dense", "step 1", "step 1", "step 3", "step 3"]
    assert [r["drop"] <= 1.0 for r in steps] == [True, False, True, False, False]
    assert by["step 2"]["macs"] < by["step 3"]["macs"] < by["step 1"]["macs"]  # half as far
    # the second retry starts from step 3 and goes half as far as step 4 did
    assert by["step 3"]["macs"] > by["step 5"]["macs"] > by["step 4"]["macs"]
    assert not result.met and "step 5 lost" in result.verdict
    assert [r["name"] for r in result.rows if r["chosen"]] == ["step 3"]
    assert count_macs(result.model, example) == by["step 3"]["macs"]
    assert set(result.models) == {"dense", "step 1", "step 3"}  # over the bound: not kept
