"""``prunekit explain``: groups, scores and pins of a user's model, nothing cut; bad input in one
line with exit code 2."""

from pathlib import Path

from typer.testing import CliRunner

from prunekit.cli import app

runner = CliRunner()

ATTENTION = '''
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(8, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        q, k, v = (p(x).view(x.size(0), x.size(1), 4, 4).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        y = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
        return self.out(y.transpose(1, 2).flatten(2)).mean(1)


def make():
    return Attention()
'''


def test_explain_shows_groups_pins_and_the_reason(tmp_path: Path) -> None:
    source = tmp_path / "attention.py"
    source.write_text(ATTENTION)
    result = runner.invoke(app, ["explain", "--trust-code", "--model", f"{source}:make",
                                 "--input-shape", "2,5,8", "--ratio", "0.5"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "0 removable units" in result.output  # the heads are pinned, and it says why
    assert "literal size" in result.output and "view" in result.output
    assert "warning: all 16 units of 'q' are kept" in result.output


def test_explain_plans_a_zoo_model_and_rejects_bad_input() -> None:
    result = runner.invoke(app, ["explain", "--model", "lenet5", "--input-shape", "1,1,28,28",
                                 "--max-macs", "0.5"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "remove" in result.output and "at ratio" in result.output
    bad = runner.invoke(app, ["explain", "--model", "lenet5", "--input-shape", "1,x"])
    assert bad.exit_code == 2 and "input shape" in bad.output and "Traceback" not in bad.output
