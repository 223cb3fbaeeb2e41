"""Recovery: distil the pruned model towards the dense one on calibration text.

Why distillation rather than fine-tuning on the text: the dense model's full next-token
distribution carries far more signal per token than the one-hot next token, so a few hundred
steps on a CPU recover much of what pruning lost (Sanh et al. 2020; Minitron, Muralidharan et
al. 2024). Losses:

- causal LMs: ``KL(teacher ‖ student)`` on the logits at temperature ``T`` (scaled by ``T²``),
  plus, with ``hidden_weight``, the MSE between the final hidden states (the last layer's
  output, so it works after depth pruning too), relative to the teacher's mean square;
- encoders: ``1 − cos`` between the student's and the teacher's sentence embeddings (mean
  pooled) plus ``1 − cos`` between their token states: what a sentence encoder is used for;
- with ``layer_weight`` (both kinds), the same token-state term for every layer's output, so
  each pruned layer is pulled back towards what its dense twin hands the next one (TinyBERT's
  layer-wise distillation, Jiao et al. 2020); only when the depths match (no layer removed),
  else it is refused rather than silently pairing the wrong layers.

Only the transformer layers train (embeddings and the LM head stay as they are: they were not
pruned). Zeros from one-shot pruning stay zeros: their positions are held by
:mod:`prunekit.masks` during training and the masks are stripped afterwards. AdamW with linear
warm-up and cosine decay; dropout is off (eval mode) so the student matches the teacher's
deterministic outputs.

>>> import copy, torch
>>> from transformers import LlamaConfig, LlamaForCausalLM
>>> teacher = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64,
...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50)).eval()
>>> student = copy.deepcopy(teacher)
>>> with torch.no_grad():
...     _ = student.model.layers[0].mlp.up_proj.weight.mul_(0.0)
>>> batches = [{"input_ids": torch.randint(0, 50, (4, 16))}]
>>> report = distill(student, teacher, batches, steps=20, lr=1e-2, progress=False)
>>> report.final_loss < report.initial_loss
True
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prunekit.hf.architectures import architecture_of, decoder_layers, linear_layers
from prunekit.hf.layerwise import Batch, forward_kwargs
from prunekit.hf.text_eval import mean_pool
from prunekit.masks import MaskEnforcement, set_mask, strip
from prunekit.progress import progress_bar


@dataclass
class RecoveryReport:
    """Loss before and after recovery, and what it cost."""

    steps: int
    initial_loss: float
    final_loss: float
    seconds: float


def _causal_loss(
    student_out: object, teacher_out: object, temperature: float, hidden_weight: float
) -> Tensor:
    s = student_out.logits.float() / temperature
    t = teacher_out.logits.float() / temperature
    kl = nn.functional.kl_div(
        s.log_softmax(-1).flatten(0, -2), t.log_softmax(-1).flatten(0, -2),
        log_target=True, reduction="batchmean",
    ) * temperature**2  # fmt: skip
    if hidden_weight:
        hs, ht = student_out.hidden_states[-1], teacher_out.hidden_states[-1]
        kl = kl + hidden_weight * (hs - ht).square().mean() / ht.square().mean()
    return kl


def _encoder_loss(student_out: object, teacher_out: object, mask: Tensor) -> Tensor:
    hs, ht = student_out.last_hidden_state, teacher_out.last_hidden_state
    pooled = 1 - nn.functional.cosine_similarity(mean_pool(hs, mask), mean_pool(ht, mask), dim=-1)
    tokens = 1 - nn.functional.cosine_similarity(hs, ht, dim=-1)
    weights = mask.to(tokens.dtype)
    return pooled.mean() + (tokens * weights).sum() / weights.sum()


def _layer_loss(student_out: object, teacher_out: object, mask: Tensor | None) -> Tensor:
    """Mean over layers of ``1 − cos`` between matching token states (embeddings excluded)."""
    pairs = list(zip(student_out.hidden_states[1:], teacher_out.hidden_states[1:], strict=True))
    total = torch.zeros(())
    for hs, ht in pairs:
        tokens = 1 - nn.functional.cosine_similarity(hs, ht, dim=-1)
        if mask is None:
            total = total + tokens.mean()
        else:
            weights = mask.to(tokens.dtype)
            total = total + (tokens * weights).sum() / weights.sum()
    return total / len(pairs)


def _hold_zeros(model: nn.Module) -> bool:
    """Put a mask on every layer weight that holds zeros; True if any did."""
    held = False
    for layer in decoder_layers(model):
        for module in linear_layers(layer).values():
            if bool((module.weight == 0).any()):
                set_mask(module, "weight", module.weight != 0)
                held = True
    return held


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Sequence[Batch],
    *,
    steps: int,
    lr: float = 1e-4,
    temperature: float = 1.0,
    hidden_weight: float = 0.0,
    layer_weight: float = 0.0,
    warmup: int = 10,
    progress: bool = True,
) -> RecoveryReport:
    """Train ``student`` towards ``teacher`` for ``steps`` steps, cycling through ``batches``."""
    if steps < 1:
        raise ValueError(f"recovery needs steps >= 1, got {steps}")
    causal = architecture_of(student).causal
    if layer_weight and len(decoder_layers(student)) != len(decoder_layers(teacher)):
        raise ValueError(
            f"layer_weight pairs layer i of the student with layer i of the teacher, but they "
            f"have {len(decoder_layers(student))} and {len(decoder_layers(teacher))} layers; "
            f"use layer_weight=0 after removing layers"
        )
    teacher.eval()
    student.eval()  # no dropout: match the teacher's deterministic outputs
    params = [p for p in decoder_layers(student).parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    enforcement = MaskEnforcement() if _hold_zeros(student) else None
    if enforcement:
        enforcement.on_fit_start(student, optimizer)
    hidden = bool(hidden_weight or layer_weight)
    extra = {**forward_kwargs(student), **({"output_hidden_states": True} if hidden else {})}
    losses: list[float] = []
    start = time.perf_counter()
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("recovery (distillation)", total=steps)
            for step, batch in zip(range(steps), itertools.cycle(batches)):
                for group in optimizer.param_groups:
                    group["lr"] = _lr_at(step, steps, lr, min(warmup, steps // 2 or 1))
                with torch.no_grad():
                    target = teacher(**batch, **extra)
                output = student(**batch, **extra)
                mask = batch.get("attention_mask")
                if causal:
                    loss = _causal_loss(output, target, temperature, hidden_weight)
                else:
                    mask = torch.ones_like(batch["input_ids"]) if mask is None else mask
                    loss = _encoder_loss(output, target, mask)
                if layer_weight:
                    loss = loss + layer_weight * _layer_loss(output, target, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.update(task, advance=1)
    finally:
        if enforcement:
            strip(student)
        student.zero_grad(set_to_none=True)
        student.eval()
    window = max(1, min(10, len(losses) // 4))
    return RecoveryReport(steps, sum(losses[:window]) / window, sum(losses[-window:]) / window,
                          time.perf_counter() - start)  # fmt: skip
