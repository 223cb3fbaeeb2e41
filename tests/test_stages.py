"""Each stage spec becomes the library call it names: the right schedule, regularizer and
pruning, in the order the variant lists them."""

from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit import regularizers
from prunekit.data import load_dataset
from prunekit.evaluate import prunable_sparsity
from prunekit.models import build_model
from prunekit.recipe import RegularizerSpec, ScheduleSpec, VariantSpec, parse_recipe
from prunekit.runs import RunRecorder, RunStore
from prunekit.stages import RunContext, _regularizer, _schedule, run_stages


@pytest.mark.parametrize(("kind", "midway"), [("constant", 0.8), ("agp", 0.7),
                                              ("polynomial_decay", 0.7)])
def test_each_schedule_kind_reaches_the_final_sparsity_along_its_own_curve(
    kind: str, midway: float
) -> None:
    schedule = _schedule(ScheduleSpec(kind=kind, final_sparsity=0.8, end_step=100, frequency=10))
    assert schedule(100)[1] == pytest.approx(0.8)
    assert schedule(50)[1] == pytest.approx(midway)  # 0.8 * (1 - 0.5**3) for a power of 3


def _context(tmp_path: Path, recipe: dict) -> RunContext:
    return RunContext(parse_recipe(recipe), load_dataset("digits"), tmp_path, False,
                      RunRecorder(RunStore(tmp_path), None))


RECIPE = {"name": "t", "data": {"name": "digits"}, "train": {"epochs": 1},
          "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [16]}}}


@pytest.mark.parametrize(("kind", "term", "callback"), [
    ("l1", regularizers.L1, None), ("elastic_net", regularizers.ElasticNet, None),
    ("bn_scale_l1", regularizers.BNScaleL1, None), ("proximal_l1", None, regularizers.ProximalL1),
])
def test_a_regularizer_is_a_loss_term_or_for_the_proximal_step_a_callback(
    tmp_path: Path, kind: str, term: type | None, callback: type | None
) -> None:
    terms, callbacks = _regularizer(_context(tmp_path, RECIPE), nn.Linear(2, 2),
                                    RegularizerSpec(kind=kind, lam=1e-3))
    assert [type(t) for t in terms] == ([term] if term else [])
    assert [type(c) for c in callbacks] == ([callback] if callback else [])


def test_stages_run_in_order_on_the_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path, RECIPE)
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, hidden=(16,))
    variant = VariantSpec(name="v", stages=[{"prune": {"sparsity": 0.5}},
                                            {"structured": {"ratio": 0.5, "latency_aware": False}}])
    out = run_stages(ctx, model, variant)
    assert out is model and model.net[1].out_features == 8  # half the hidden units removed
    # In this order the removal takes the units the one-shot pruning emptied most, so fewer
    # than half the remaining weights are zero; the other order would leave exactly 0.5.
    assert 0.3 < prunable_sparsity(model) < 0.5 - 1e-3
