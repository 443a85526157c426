"""Optimiser parameter groups and the schedules of one training run: layer-wise learning-rate decay, linear
warmup then polynomial decay, and the annealing of masked attention from 1 to 0.

Everything is a pure function of the step, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "register_tokens")  # register_tokens: DINOv3


def layer_id(name: str, depth: int) -> int:
    """The depth of a parameter for layer-wise decay: 0 for the patch embedding and the tokens, i + 1 for ViT
    block i, depth + 1 for everything after the ViT blocks (final norm, queries, heads, upscaler)."""
    if name.startswith("encoder.backbone."):
        rest = name.removeprefix("encoder.backbone.")
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
        if rest.startswith(("patch_embed.", *NO_DECAY_NAMES)):
            return 0
    return depth + 1


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: lr * layer_decay ** (depth + 1 - layer) per layer; no weight decay on biases, norms,
    layer scales, position embedding and tokens. Each group keeps its peak lr in "base_lr"."""
    depth = len(model.encoder.backbone.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_id(name, depth)
        decays = parameter.ndim > 1 and not any(n in name for n in NO_DECAY_NAMES)
        group = groups.setdefault((layer, decays), {
            "params": [], "names": [], "weight_decay": weight_decay if decays else 0.0,
            "base_lr": lr * layer_decay ** (depth + 1 - layer)})
        group["params"].append(parameter)
        group["names"].append(name)
    result = [groups[key] for key in sorted(groups)]
    for group in result:
        group["lr"] = group["base_lr"]
    return result


def lr_factor(step: int, total_steps: int, warmup_steps: int, power: float = 0.9) -> float:
    """Linear warmup from 0 to 1 over warmup_steps, then (1 - progress) ** power down to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(0.0, 1 - progress) ** power


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def mask_probabilities(step: int, total_steps: int, num_blocks: int, start: float = 0.1, end: float = 0.7,
                       power: float = 0.9) -> list[float]:
    """Per query block, the probability that a query's attention is masked at `step`.

    All blocks start at 1. The annealing window [start, end] (fractions of training) is cut into num_blocks
    consecutive intervals; block k (k = 0 the first block holding queries) decays polynomially from 1 to 0 in
    interval k and stays 0 afterwards, so the earliest blocks learn to do without masks first and the whole
    network trains its last part exactly as inference runs it: without masked attention.
    """
    first, last = start * total_steps, end * total_steps
    span = (last - first) / num_blocks
    probabilities = []
    for block in range(num_blocks):
        begin = first + block * span
        t = (step - begin) / span if span > 0 else float(step >= begin)
        probabilities.append(float(min(1.0, max(0.0, 1 - t)) ** power) if t < 1 else 0.0)
    return probabilities
