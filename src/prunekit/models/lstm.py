"""An LSTM classifier over sequences: MNIST images read as 28 steps of 28-pixel rows.

Why: recurrent layers are where hidden-unit pruning must shrink four gate blocks of two weight
matrices at once (and the next layer's input); this model gives that pruning a real, trainable
target on the offline data. It reads ``N×T×F`` sequences, and ``N×C×H×W`` images as ``C·H`` steps
of ``W`` features (``x.flatten(1, -2)``, a no-op on sequences), then classifies from the last
step's hidden state.

>>> import torch
>>> LSTMClassifier()(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from torch import Tensor, nn

from prunekit.models.registry import register


@register("lstm")
class LSTMClassifier(nn.Module):
    """``nn.LSTM`` (batch first) → last time step → ``nn.Linear`` to class logits."""

    def __init__(
        self,
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        steps = self.lstm(x.flatten(1, -2))[0]
        return self.fc(steps[:, -1])
