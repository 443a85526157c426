"""Hungarian matching of predicted queries to ground-truth segments (Mask2Former / EoMT style).

The cost of assigning query q to segment t is
    class_weight * -p_q(class_t) + mask_weight * BCE(mask_q, mask_t) + dice_weight * dice(mask_q, mask_t),
with both mask costs averaged over the pixels of the (low-resolution) masks (over the valid pixels when a valid
map is given, as the loss does: see losses.py), and the assignment minimising the total cost is found exactly
with scipy's `linear_sum_assignment`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def pairwise_mask_costs(mask_logits: torch.Tensor, target_masks: torch.Tensor,
                        valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., Q, P) logits and (T, P) targets in [0, 1] -> (..., Q, T) mean sigmoid BCE and (..., Q, T) dice loss.
    valid (P,): the image's valid coverage per pixel; the costs then count valid pixels only.

    BCE(x, t) = softplus(-x) t + softplus(x) (1 - t) per pixel, so all pairs come from two matrix products.
    """
    mask_logits, target_masks = mask_logits.float(), target_masks.float()
    if valid is not None:
        return _pairwise_valid_costs(mask_logits, target_masks, valid.float())
    pixels = mask_logits.shape[-1]
    positive, negative = F.softplus(-mask_logits), F.softplus(mask_logits)
    bce = (positive @ target_masks.T + negative @ (1 - target_masks).T) / pixels
    probs = mask_logits.sigmoid()
    numerator = 2 * probs @ target_masks.T
    denominator = probs.sum(-1)[..., None] + target_masks.sum(-1)
    dice = 1 - (numerator + 1) / (denominator + 1)
    return bce, dice


def _pairwise_valid_costs(mask_logits: torch.Tensor, target_masks: torch.Tensor,
                          valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pairwise_mask_costs over valid pixels: targets are covered fractions (<= valid), as in losses.sigmoid_bce."""
    positive, negative = F.softplus(-mask_logits), F.softplus(mask_logits)
    bce = (positive @ target_masks.T + negative @ (valid - target_masks).T) / valid.sum().clamp_min(1e-6)
    probs = mask_logits.sigmoid() * valid
    dice = 1 - (2 * probs @ target_masks.T + 1) / (probs.sum(-1)[..., None] + target_masks.sum(-1) + 1)
    return bce, dice


def matching_cost(mask_logits: torch.Tensor, class_logits: torch.Tensor, target_masks: torch.Tensor,
                  target_labels: torch.Tensor, class_weight: float = 2.0, mask_weight: float = 5.0,
                  dice_weight: float = 5.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(..., Q, T) cost matrices of one image. mask_logits (..., Q, h, w), class_logits (..., Q, C + 1),
    target_masks (T, h, w) in [0, 1] at the same resolution, target_labels (T,) class ids, valid (h, w) the
    valid coverage or None. Leading dimensions hold several predictions of the same image (EoMT's intermediate
    ones)."""
    class_prob = class_logits.float().softmax(-1)[..., target_labels]
    bce, dice = pairwise_mask_costs(mask_logits.flatten(-2), target_masks.flatten(1),
                                    None if valid is None else valid.flatten())
    return class_weight * -class_prob + mask_weight * bce + dice_weight * dice


def hungarian_match(mask_logits: torch.Tensor, class_logits: torch.Tensor, target_masks: torch.Tensor,
                    target_labels: torch.Tensor, class_weight: float = 2.0, mask_weight: float = 5.0,
                    dice_weight: float = 5.0, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-cost one-to-one assignment of one image: (query indices, target indices), sorted by query.
    min(Q, T) pairs; with no targets, two empty index tensors."""
    return hungarian_match_many(mask_logits[None], class_logits[None], target_masks, target_labels, class_weight,
                                mask_weight, dice_weight, valid)[0]


@torch.no_grad()
def hungarian_match_many(mask_logits: torch.Tensor, class_logits: torch.Tensor, target_masks: torch.Tensor,
                         target_labels: torch.Tensor, class_weight: float = 2.0, mask_weight: float = 5.0,
                         dice_weight: float = 5.0,
                         valid: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`hungarian_match` for L predictions of the same image at once (mask_logits (L, Q, h, w), class_logits
    (L, Q, C + 1)): one cost computation and one copy to the CPU instead of L."""
    device = mask_logits.device
    if len(target_labels) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return [(empty, empty)] * len(mask_logits)
    costs = matching_cost(mask_logits, class_logits, target_masks, target_labels, class_weight, mask_weight,
                          dice_weight, valid).cpu().numpy()
    matches = []
    for cost in costs:
        queries, targets = linear_sum_assignment(cost)
        matches.append((torch.as_tensor(queries, dtype=torch.long, device=device),
                        torch.as_tensor(targets, dtype=torch.long, device=device)))
    return matches
