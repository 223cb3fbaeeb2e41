"""Make a (pruned or dense) model run at its MACs on CPU: fold BatchNorm, use channels-last.

Why: channel pruning divides a conv's MACs by ~4 at half the channels, but BatchNorm, ReLU and
residual adds are memory-bound passes over the activations whose cost only halves. In eager
PyTorch they are a larger share of a pruned model's time than of the dense one's, so the
latency gain falls short of the MACs gain (Torch-Pruning's ResNet-18 at 50 %: 3.41× faster for
3.74× fewer MACs). Folding each BatchNorm into the conv before it removes one such pass per
layer, and the channels-last layout lets oneDNN run its blocked NHWC kernels without reorders.
Apply it to the dense model too when comparing: it speeds both up, the pruned one more.

The result is still an ordinary ``nn.Module``: each folded BatchNorm becomes ``nn.Identity`` and
its conv gains the folded scale and bias. It is for inference only (eval-mode statistics).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
>>> _ = net[1].running_mean.uniform_()
>>> x = torch.randn(2, 3, 8, 8)
>>> expected = net(x)
>>> fold_batch_norms(net)
1
>>> type(net[1]).__name__, torch.allclose(net(x), expected, atol=1e-5)
('Identity', True)
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a conv (its only user) into it; in place.

    Returns the number folded. The model must be traceable by torch.fx.
    """
    graph = fx.symbolic_trace(model).graph
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1:
            continue
        conv = model.get_submodule(str(source.target))
        norm = model.get_submodule(str(node.target))
        if not (isinstance(conv, _CONVS) and isinstance(norm, _NORMS)):
            continue
        if norm.running_mean is None or norm.running_var is None:
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
            norm.weight, norm.bias,
        )
        conv.weight, conv.bias = weight, bias
        _set(model, str(node.target), nn.Identity())
        folded += 1
    return folded


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Eval mode, BatchNorms folded, 4-D weights channels-last; returns ``model`` (in place).

    Feed it ``x.to(memory_format=torch.channels_last)`` for image inputs.
    """
    model.eval()
    fold_batch_norms(model)
    return model.to(memory_format=torch.channels_last)
