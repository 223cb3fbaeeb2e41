"""Run a transformer one layer at a time on calibration data, as one-shot pruning needs.

Why: Wanda and SparseGPT prune each layer from statistics of its *inputs*, and those inputs
should be what the layer will see in the pruned model — the outputs of the layers already
pruned — not the dense model's. Running the whole model once per layer would cost L forwards
per layer; instead the inputs of the first layer are caught once (a pre-hook records exactly
what the HF model passes it — hidden states, the attention mask it built, rotary
``position_embeddings``, whatever this transformers version adds — and stops the forward), and
each layer then runs alone on the previous layer's outputs with those same keyword arguments.
Nothing here depends on how a given release builds its masks.

>>> import torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50)).eval()
>>> batch = {"input_ids": torch.randint(0, 50, (2, 7))}
>>> inputs = capture_layer_inputs(model, [batch])
>>> inputs.hidden[0].shape
torch.Size([2, 7, 32])
>>> out = run_layer(decoder_layers(model)[0], inputs)
>>> out[0].shape
torch.Size([2, 7, 32])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import architecture_of, decoder_layers

Batch = Mapping[str, Tensor]


class _Caught(Exception):
    """Raised by the pre-hook on the first layer to stop the forward once its inputs are seen."""


@dataclass
class LayerInputs:
    """What the first layer receives, one entry per calibration batch; ``hidden`` is replaced
    by each layer's outputs as the walk goes deeper."""

    hidden: list[Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def with_hidden(self, hidden: list[Tensor]) -> LayerInputs:
        return LayerInputs(hidden, self.args, self.kwargs)


def forward_kwargs(model: nn.Module) -> dict[str, Any]:
    """Keyword arguments for a calibration forward: no KV cache for causal models."""
    return {"use_cache": False} if architecture_of(model).causal else {}


@torch.no_grad()
def capture_layer_inputs(model: nn.Module, batches: Iterable[Batch]) -> LayerInputs:
    """The first layer's inputs (positional and keyword) for every batch in ``batches``."""
    first = decoder_layers(model)[0]
    inputs = LayerInputs()

    def catch(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            kwargs = dict(kwargs)
            hidden, rest = kwargs.pop("hidden_states"), ()
        inputs.hidden.append(hidden.detach())
        inputs.args.append(rest)
        inputs.kwargs.append(dict(kwargs))
        raise _Caught

    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    extra = forward_kwargs(model)
    try:
        for batch in batches:
            try:
                model(**batch, **extra)
            except _Caught:
                continue
            raise RuntimeError("the first transformer layer was never called by the forward")
    finally:
        handle.remove()
    return inputs


def layer_output(result: Any) -> Tensor:
    """The hidden states a layer returns (a tensor, or the first item of a tuple)."""
    return result[0] if isinstance(result, (tuple, list)) else result


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs) -> list[Tensor]:
    """``layer``'s outputs for every batch of ``inputs``."""
    return [
        layer_output(layer(hidden, *args, **kwargs))
        for hidden, args, kwargs in zip(inputs.hidden, inputs.args, inputs.kwargs, strict=True)
    ]
