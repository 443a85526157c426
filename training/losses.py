"""The training loss of EoMT (Mask2Former's set loss): per prediction, Hungarian matching, then class
cross-entropy over all queries (unmatched ones should say "no object", weighted 0.1) and sigmoid BCE + dice on
the masks of the matched queries; summed over the intermediate block predictions and the final one.

Masks are compared at one resolution, `mask_size` (default: the resolution of the mask logits): logits are
resized bilinearly and the full-resolution targets by area averaging, so every target pixel counts and a
boundary cell gets a soft target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.matcher import hungarian_match_many


@dataclass(frozen=True)
class LossWeights:
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1


@dataclass
class Targets:
    """Ground truth of one image: masks (T, S, S) bool at the network's input size, labels (T,) class ids."""

    masks: torch.Tensor
    labels: torch.Tensor


def resize_targets(targets: list[Targets], size: tuple[int, int]) -> list[torch.Tensor]:
    """Each image's (T, S, S) masks as (T, h, w) float coverage in [0, 1]."""
    resized = []
    for target in targets:
        masks = target.masks.float()
        if tuple(masks.shape[-2:]) != tuple(size):
            masks = F.interpolate(masks[None], size=size, mode="area")[0] if len(masks) else masks.new_zeros(0, *size)
        resized.append(masks)
    return resized


def sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask mean BCE: (N, P), (N, P) -> (N,)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss: (N, P), (N, P) -> (N,)."""
    probs = logits.sigmoid()
    return 1 - (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)


def eomt_loss(mask_logits_per_block: list[torch.Tensor], class_logits_per_block: list[torch.Tensor],
              targets: list[Targets], num_masks: float, weights: LossWeights = LossWeights(),
              mask_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss summed over all L predictions (intermediate blocks and final) of a batch, and its parts for
    logging (`class`, `mask`, `dice` of the final prediction, and `total`).

    mask_logits_per_block: L tensors (B, Q, h, w); class_logits_per_block: L tensors (B, Q, C + 1). Each
    prediction is matched to the targets on its own; mask losses are summed over matched pairs and divided by
    `num_masks`, the number of targets in the whole batch (over all processes, as Mask2Former normalises).
    """
    size = tuple(mask_size or mask_logits_per_block[-1].shape[-2:])
    mask_logits = torch.stack([m.float() for m in mask_logits_per_block])  # (L, B, Q, h, w)
    if tuple(mask_logits.shape[-2:]) != size:
        mask_logits = F.interpolate(mask_logits.flatten(0, 1), size=size, mode="bilinear",
                                    align_corners=False).unflatten(0, mask_logits.shape[:2])
    mask_logits = mask_logits.flatten(-2)  # (L, B, Q, P)
    class_logits = torch.stack([c.float() for c in class_logits_per_block])  # (L, B, Q, C + 1)
    layers, batch, num_queries, num_outputs = class_logits.shape
    no_object = num_outputs - 1
    target_masks = [m.flatten(1) for m in resize_targets(targets, size)]

    # Matching, image by image (all its predictions at once); everything after it is batched: one gather of the
    # matched masks, whose backward is one scatter instead of one per prediction and image.
    class_targets = torch.full((layers, batch, num_queries), no_object, dtype=torch.long, device=class_logits.device)
    matched_rows, matched_targets, matched_layer = [], [], []
    for i, (target, masks) in enumerate(zip(targets, target_masks, strict=True)):
        matches = hungarian_match_many(mask_logits[:, i].detach().unflatten(-1, size), class_logits[:, i].detach(),
                                       masks.unflatten(-1, size), target.labels, weights.class_weight,
                                       weights.mask_weight, weights.dice_weight)
        for layer, (queries, indices) in enumerate(matches):
            class_targets[layer, i, queries] = target.labels[indices]
            matched_rows.append((layer * batch + i) * num_queries + queries)
            matched_targets.append(masks[indices])
            matched_layer.append(torch.full((len(queries),), layer, device=class_logits.device))

    class_weights = torch.ones(num_outputs, device=class_logits.device)
    class_weights[no_object] = weights.no_object_weight
    # Per prediction, the weighted mean over its queries; every prediction has the same total weight (the same
    # number of matches), so the mean over all of them times L is the sum of the per-prediction losses.
    loss_class = F.cross_entropy(class_logits.reshape(-1, num_outputs), class_targets.flatten(), weight=class_weights,
                                 reduction="none")
    per_layer_class = (loss_class.view(layers, -1).sum(1) / class_weights[class_targets].view(layers, -1).sum(1))
    logits = mask_logits.flatten(0, 2)[torch.cat(matched_rows)]  # (matches, P)
    truth, layer_of = torch.cat(matched_targets), torch.cat(matched_layer)
    per_layer_mask = torch.zeros(layers, device=logits.device).index_add_(0, layer_of, sigmoid_bce(logits, truth))
    per_layer_dice = torch.zeros(layers, device=logits.device).index_add_(0, layer_of, dice_loss(logits, truth))
    per_layer = {"class": weights.class_weight * per_layer_class,
                 "mask": weights.mask_weight * per_layer_mask / num_masks,
                 "dice": weights.dice_weight * per_layer_dice / num_masks}
    total = sum(value.sum() for value in per_layer.values())
    logged = {name: float(value[-1].detach()) for name, value in per_layer.items()}
    logged["total"] = float(total.detach())
    return total, logged
