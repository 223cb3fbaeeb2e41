from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.data import load_dataset
from prunekit.evaluate import evaluate_accuracy
from prunekit.models import build_model
from prunekit.train import Distillation, fit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", in_features=64, hidden=(32,))


def test_fit_learns_digits(digits) -> None:
    model = _mlp()
    before = evaluate_accuracy(model, digits.x_test, digits.y_test)["accuracy"]
    history = fit(model, digits.x_train, digits.y_train, epochs=10, lr=1e-2, progress=False)
    after = evaluate_accuracy(model, digits.x_test, digits.y_test)["accuracy"]
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert before < 0.3 and after > 0.9


def test_fit_is_reproducible_for_a_seed(digits) -> None:
    a, b = _mlp(), _mlp()
    fit(a, digits.x_train, digits.y_train, epochs=1, seed=7, progress=False)
    fit(b, digits.x_train, digits.y_train, epochs=1, seed=7, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_resume_from_checkpoint_equals_uninterrupted_run(digits, tmp_path: Path) -> None:
    straight = _mlp()
    fit(straight, digits.x_train, digits.y_train, epochs=3, optimizer="sgd", lr=0.05, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    interrupted = _mlp()
    fit(interrupted, digits.x_train, digits.y_train, epochs=2, optimizer="sgd", lr=0.05,
        checkpoint=ckpt, progress=False)
    resumed = _mlp()  # a fresh process would rebuild the model from scratch
    history = fit(resumed, digits.x_train, digits.y_train, epochs=3, optimizer="sgd", lr=0.05,
                  checkpoint=ckpt, progress=False)
    assert len(history.epochs) == 3
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_callbacks_see_every_step_in_order(digits) -> None:
    seen: list[int] = []

    class Recorder:
        def on_step_end(self, step, model, optimizer):
            seen.append(step)

    history = fit(_mlp(), digits.x_train, digits.y_train, epochs=2, batch_size=100,
                  callbacks=[Recorder()], progress=False)
    assert seen == list(range(history.steps)) and history.steps == 2 * 15


def test_regularizer_enters_the_loss(digits) -> None:
    plain, penalised = _mlp(), _mlp()
    fit(plain, digits.x_train, digits.y_train, epochs=2, progress=False)

    def heavy_l1(model: nn.Module) -> torch.Tensor:
        return 1e-2 * sum(p.abs().sum() for n, p in model.named_parameters() if "weight" in n)

    fit(penalised, digits.x_train, digits.y_train, epochs=2, regularizers=[heavy_l1], progress=False)
    norm = lambda m: sum(float(p.detach().abs().sum()) for n, p in m.named_parameters() if "weight" in n)
    assert norm(penalised) < 0.5 * norm(plain)


def test_distillation_pulls_student_towards_teacher(digits) -> None:
    teacher = _mlp()
    fit(teacher, digits.x_train, digits.y_train, epochs=5, progress=False)
    student = _mlp()
    kd = Distillation(teacher.eval(), alpha=1.0, temperature=2.0)
    fit(student, digits.x_train, digits.y_train, epochs=5, distillation=kd, progress=False)
    agree = (student(digits.x_test).argmax(1) == teacher(digits.x_test).argmax(1)).float().mean()
    assert agree > 0.85


def test_bad_arguments_are_named(digits) -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        fit(_mlp(), digits.x_train, digits.y_train, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="samples"):
        fit(_mlp(), digits.x_train, digits.y_train[:-1], progress=False)
    with pytest.raises(ValueError, match="unknown loss 'mae'"):
        fit(_mlp(), digits.x_train, digits.y_train, loss="mae", progress=False)
    with pytest.raises(ValueError, match="integer class labels, but the targets are float32"):
        fit(_mlp(), digits.x_train, digits.x_train, progress=False)  # an autoencoder's targets
    with pytest.raises(ValueError, match="trust_code=True"):
        fit(_mlp(), digits.x_train, digits.y_train, loss="torch.nn.functional:mse_loss",
            progress=False)


@pytest.fixture(scope="module")
def regression():
    return load_dataset("seed_regression")


def _regressor() -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", in_features=10, hidden=(32,), num_classes=1)


def test_fit_learns_a_regression_with_mse_and_l1(regression) -> None:
    from prunekit.tasks import evaluate_task

    for loss in ("mse", "l1"):
        model = _regressor()
        before = evaluate_task(model, regression.x_test, regression.y_test, task="regression")
        fit(model, regression.x_train, regression.y_train, epochs=4, lr=3e-3, loss=loss,
            progress=False)
        after = evaluate_task(model, regression.x_test, regression.y_test, task="regression",
                              loss=loss)
        assert before["r2"] < 0.1 and after["r2"] > 0.6, loss


def test_fit_trains_an_autoencoder_on_its_own_inputs(digits) -> None:
    torch.manual_seed(0)
    model = build_model("autoencoder", input_shape=(1, 8, 8), hidden=(32, 16))
    history = fit(model, digits.x_train, digits.x_train, epochs=3, lr=3e-3, loss="mse",
                  progress=False)
    assert history.epochs[-1]["loss"] < 0.6 * history.epochs[0]["loss"]


def test_fit_keeps_a_frozen_batchnorm_frozen_and_restores_modes(digits) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(32, 10))
    model[2].eval()  # frozen statistics, as when fine-tuning a pretrained model
    statistics = model[2].running_mean.clone()
    fit(model, digits.x_train, digits.y_train, epochs=1, progress=False)
    assert torch.equal(model[2].running_mean, statistics)  # never updated
    assert [m.training for m in model] == [True, True, False, True, True, True]
    model.eval()
    fit(model, digits.x_train, digits.y_train, epochs=1, progress=False)
    assert not model.training and not any(m.training for m in model)  # given back as it came
    assert not torch.equal(model[2].running_mean, statistics)  # an eval model trains whole


def test_distillation_of_a_regression_matches_the_teachers_outputs(regression) -> None:
    teacher = _regressor()
    fit(teacher, regression.x_train, regression.y_train, epochs=4, lr=3e-3, loss="mse",
        progress=False)
    teacher.eval()
    noise = torch.randn_like(regression.y_train)  # labels the student must ignore (alpha = 1)
    student = _regressor()
    fit(student, regression.x_train, noise, epochs=4, lr=3e-3, loss="mse", progress=False,
        distillation=Distillation(teacher, alpha=1.0))
    with torch.no_grad():
        gap = float(((student(regression.x_test) - teacher(regression.x_test)) ** 2).mean())
        spread = float(teacher(regression.x_test).var())
    assert gap < 0.1 * spread
