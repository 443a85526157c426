"""The training loss of EoMT (Mask2Former's set loss): per prediction, Hungarian matching, then class
cross-entropy over all queries (unmatched ones should say "no object", weighted 0.1) and sigmoid BCE + dice on
the masks of the matched queries; summed over the intermediate block predictions and the final one.

Masks are compared at one resolution, `mask_size` (default: the resolution of the mask logits): logits are
resized bilinearly and the full-resolution targets by area averaging, so every target pixel counts and a
boundary cell gets a soft target.

Semantic targets carry a `valid` map (False where the ground truth says ignore): the mask BCE and dice of the
matched queries, and the mask costs of the matching, then count valid pixels only. With the valid fraction w
and the target coverage m of a low-resolution cell (m <= w), the cell adds m * BCE(x, 1) + (w - m) * BCE(x, 0),
and the BCE is divided by the sum of w instead of the pixel count; without ignored pixels (w = 1) this is
the plain loss. The official EoMT counts ignored pixels as background of every mask instead.
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
    """Ground truth of one image: masks (T, S, S) bool at the network's input size, labels (T,) class ids, and
    for semantic targets valid (S, S) bool, False on ignored pixels (None: every pixel counts)."""

    masks: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor | None = None

    def to(self, device: torch.device) -> Targets:
        def move(tensor):
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return Targets(move(self.masks), move(self.labels), move(self.valid))


def resize_targets(targets: list[Targets], size: tuple[int, int]) -> list[torch.Tensor]:
    """Each image's (T, S, S) masks as (T, h, w) float coverage in [0, 1]."""
    resized = []
    for target in targets:
        masks = target.masks.float()
        if tuple(masks.shape[-2:]) != tuple(size):
            masks = F.interpolate(masks[None], size=size, mode="area")[0] if len(masks) else masks.new_zeros(0, *size)
        resized.append(masks)
    return resized


def resize_valid(targets: list[Targets], size: tuple[int, int]) -> list[torch.Tensor] | None:
    """Each image's valid map as (h, w) float coverage in [0, 1]; None when no image has ignored pixels to
    leave out (panoptic targets), so that the plain losses run."""
    if all(target.valid is None for target in targets):
        return None
    resized = []
    for target in targets:
        valid = (target.valid if target.valid is not None else target.masks.new_ones(target.masks.shape[-2:])).float()
        if tuple(valid.shape) != tuple(size):
            valid = F.interpolate(valid[None, None], size=size, mode="area")[0, 0]
        resized.append(valid)
    return resized


def sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-mask mean BCE: (N, P), (N, P) -> (N,). With valid (N, P) coverage, targets are the covered fraction
    of each cell (<= valid) and the mean is over valid pixels (module docstring)."""
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)
    per_pixel = targets * F.softplus(-logits) + (valid - targets) * F.softplus(logits)
    return per_pixel.sum(-1) / valid.sum(-1).clamp_min(1e-6)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-mask dice loss: (N, P), (N, P) -> (N,); with valid (N, P), over valid pixels only."""
    probs = logits.sigmoid()
    if valid is not None:
        probs = probs * valid
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
    valid_maps = resize_valid(targets, size)

    # Matching, image by image (all its predictions at once); everything after it is batched: one gather of the
    # matched masks, whose backward is one scatter instead of one per prediction and image.
    class_targets = torch.full((layers, batch, num_queries), no_object, dtype=torch.long, device=class_logits.device)
    matched_rows, matched_targets, matched_layer, matched_valid = [], [], [], []
    for i, (target, masks) in enumerate(zip(targets, target_masks, strict=True)):
        valid = None if valid_maps is None else valid_maps[i]
        matches = hungarian_match_many(mask_logits[:, i].detach().unflatten(-1, size), class_logits[:, i].detach(),
                                       masks.unflatten(-1, size), target.labels, weights.class_weight,
                                       weights.mask_weight, weights.dice_weight, valid)
        for layer, (queries, indices) in enumerate(matches):
            class_targets[layer, i, queries] = target.labels[indices]
            matched_rows.append((layer * batch + i) * num_queries + queries)
            matched_targets.append(masks[indices])
            matched_layer.append(torch.full((len(queries),), layer, device=class_logits.device))
            if valid is not None:
                matched_valid.append(valid.flatten().expand(len(queries), -1))

    class_weights = torch.ones(num_outputs, device=class_logits.device)
    class_weights[no_object] = weights.no_object_weight
    # Per prediction, the weighted mean over its queries; every prediction has the same total weight (the same
    # number of matches), so the mean over all of them times L is the sum of the per-prediction losses.
    loss_class = F.cross_entropy(class_logits.reshape(-1, num_outputs), class_targets.flatten(), weight=class_weights,
                                 reduction="none")
    per_layer_class = (loss_class.view(layers, -1).sum(1) / class_weights[class_targets].view(layers, -1).sum(1))
    logits = mask_logits.flatten(0, 2)[torch.cat(matched_rows)]  # (matches, P)
    truth, layer_of = torch.cat(matched_targets), torch.cat(matched_layer)
    valid = torch.cat(matched_valid) if valid_maps is not None else None
    per_layer_mask = torch.zeros(layers, device=logits.device).index_add_(0, layer_of,
                                                                         sigmoid_bce(logits, truth, valid))
    per_layer_dice = torch.zeros(layers, device=logits.device).index_add_(0, layer_of,
                                                                         dice_loss(logits, truth, valid))
    per_layer = {"class": weights.class_weight * per_layer_class,
                 "mask": weights.mask_weight * per_layer_mask / num_masks,
                 "dice": weights.dice_weight * per_layer_dice / num_masks}
    total = sum(value.sum() for value in per_layer.values())
    logged = {name: float(value[-1].detach()) for name, value in per_layer.items()}
    logged["total"] = float(total.detach())
    return total, logged
