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
