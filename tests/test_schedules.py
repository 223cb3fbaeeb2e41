import pytest
import torch
from torch import nn

from prunekit.evaluate import prunable_sparsity
from prunekit.schedules import (
    ConstantSparsity,
    GradualPruning,
    PolynomialDecay,
    agp,
    iterative_targets,
)
from prunekit.train import fit


def _tfmot_polynomial(step, initial, final, begin, end, power):
    """TF-MOT's formula, written out independently of our implementation."""
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return final + (initial - final) * (1 - p) ** power


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_polynomial_decay_matches_the_formula(power: float) -> None:
    s = PolynomialDecay(0.2, 0.85, begin_step=10, end_step=210, power=power, frequency=20)
    for step in range(0, 260, 7):
        assert s(step)[1] == pytest.approx(_tfmot_polynomial(step, 0.2, 0.85, 10, 210, power))


def test_pruning_turns_follow_begin_end_and_frequency() -> None:
    s = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=50, frequency=20)
    assert [t for t in range(80) if s(t)[0]] == [10, 30, 50]
    c = ConstantSparsity(0.6, begin_step=5, end_step=-1, frequency=10)
    assert [t for t in range(40) if c(t)[0]] == [5, 15, 25, 35]
    assert c(1000) == (False, 0.6) or c(1005) == (True, 0.6)


def test_agp_is_cubic_polynomial_decay() -> None:
    assert agp(0.0, 0.9, 0, 100, 10) == PolynomialDecay(0.0, 0.9, 0, 100, 3.0, 10)


def test_iterative_targets_remove_equal_fractions_of_what_is_left() -> None:
    targets = iterative_targets(0.93, 5)
    assert targets[-1] == pytest.approx(0.93)
    densities = [1 - t for t in targets]
    ratios = [b / a for a, b in zip([1.0] + densities[:-1], densities)]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PolynomialDecay(0.1, 1.2, 0, 10), r"final_sparsity must be in \[0, 1\)"),
        (lambda: PolynomialDecay(0.1, 0.5, 100, 10), r"end_step \(10\) is before begin_step"),
        (lambda: PolynomialDecay(0.1, 0.5, 0, -1), "cannot be -1"),
        (lambda: ConstantSparsity(0.5, frequency=0), "frequency must be >= 1"),
        (lambda: iterative_targets(0.5, 0), "rounds must be >= 1"),
    ],
)
def test_bad_schedules_are_named(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_gradual_pruning_follows_the_schedule_during_fit() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
    x, y = torch.randn(320, 20), torch.randint(0, 5, (320,))
    schedule = PolynomialDecay(0.3, 0.8, begin_step=2, end_step=12, frequency=5)
    seen: dict[int, float] = {}

    class Probe:
        def on_step_end(self, step, model, opt):
            seen[step] = prunable_sparsity(model)

    fit(net, x, y, epochs=2, batch_size=32, callbacks=[GradualPruning(schedule), Probe()],
        progress=False)
    assert seen[0] == 0.0 and seen[1] == 0.0
    for step in (2, 7, 12):  # after each pruning turn the model holds that turn's sparsity
        assert seen[step] == pytest.approx(schedule(step)[1], abs=2e-3)
    assert seen[19] == pytest.approx(0.8, abs=2e-3)


def test_taylor_schedule_must_start_after_a_gradient_exists() -> None:
    with pytest.raises(ValueError, match="begin_step >= 1"):
        GradualPruning(ConstantSparsity(0.5, begin_step=0), criterion="taylor")
