"""Losses by name: each checks its targets, and a user's loss imports only when trusted."""

import doctest
import sys
from pathlib import Path

import pytest
import torch

from prunekit import losses
from prunekit.losses import LOSSES, check_loss_name, resolve_loss


def test_doctests() -> None:
    assert doctest.testmod(losses).failed == 0


def test_value_losses_refuse_targets_that_would_broadcast() -> None:
    out, flat = torch.zeros(8, 1), torch.ones(8)
    for name in ("mse", "l1", "bce_with_logits"):
        with pytest.raises(ValueError, match=r"output has shape \(8, 1\) but the targets have \(8,\)"):
            LOSSES[name](out, flat)
    with pytest.raises(ValueError, match="takes float targets"):
        LOSSES["mse"](out, torch.ones(8, 1, dtype=torch.long))


def test_class_losses_refuse_float_targets_and_wrong_label_shapes() -> None:
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="integer class labels, but the targets are float32"):
        LOSSES["cross_entropy"](logits, torch.rand(4, 3))
    with pytest.raises(ValueError, match="one label per sample"):
        LOSSES["sparsemax"](logits, torch.zeros(4, 1, dtype=torch.long))
    labels = torch.tensor([0, 2, 1, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.equal(LOSSES["cross_entropy"](logits, labels), expected)
    sequence = LOSSES["cross_entropy"](torch.randn(2, 5, 7), torch.zeros(2, 7, dtype=torch.long))
    assert sequence.shape == ()  # (N, C, T) logits with (N, T) labels, as torch takes them


def test_predictions_are_in_the_targets_space() -> None:
    z = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(LOSSES["bce_with_logits"].predict(z), torch.sigmoid(z))
    torch.testing.assert_close(LOSSES["cross_entropy"].predict(z).sum(), torch.tensor(1.0))
    assert LOSSES["sparsemax"].predict(torch.tensor([[5.0, 0.0, 0.0]])).tolist() == [[1.0, 0.0, 0.0]]
    assert LOSSES["mse"].predict(z) is z


def test_names_are_checked_without_importing() -> None:
    assert check_loss_name("mse") == "mse" and check_loss_name("pkg.sub:fn") == "pkg.sub:fn"
    with pytest.raises(ValueError, match="unknown loss 'mae'; choose one of"):
        check_loss_name("mae")
    with pytest.raises(ValueError, match="not a file path"):
        check_loss_name("my_losses.py:huber")


CANARY_MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("imported").write_text("ran")


def huber(output, target):
    import torch.nn.functional as F
    return F.huber_loss(output, target, delta=0.5)
'''


def test_a_users_loss_is_imported_only_with_trust_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_losses_canary.py").write_text(CANARY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"pass --trust-code \(trust_code=True in Python\)"):
        resolve_loss("user_losses_canary:huber")
    assert not (tmp_path / "imported").exists() and "user_losses_canary" not in sys.modules
    loss = resolve_loss("user_losses_canary:huber", trust_code=True)
    assert (tmp_path / "imported").read_text() == "ran"
    assert loss.target == "any" and loss.name == "user_losses_canary:huber"
    out, target = torch.zeros(3, 1), torch.full((3, 1), 2.0)
    assert loss(out, target).item() == pytest.approx(0.5 * (2.0 - 0.25))
    with pytest.raises(ValueError, match="has no attribute named 'nothing'"):
        resolve_loss("user_losses_canary:nothing", trust_code=True)
    with pytest.raises(ValueError, match="cannot import 'no_such_module_here'"):
        resolve_loss("no_such_module_here:fn", trust_code=True)
    monkeypatch.delitem(sys.modules, "user_losses_canary")


def test_a_python_callable_needs_no_opt_in() -> None:
    def halved(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.nn.functional.mse_loss(output, target)

    loss = resolve_loss(halved)
    assert loss.name == "halved" and loss(torch.zeros(2), torch.ones(2)).item() == 0.5
    assert resolve_loss(loss) is loss
