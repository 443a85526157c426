"""From mask and class logits to panoptic, instance and semantic predictions, exactly as the reference
computes them, without its memory blow-up.

The reference upsamples all Q query masks to the full image size (Q x H x W floats: 3.4 GB for 200 queries on
a 2048x2048 photo). Here only queries that can contribute are upsampled, a chunk at a time, and reduced on the
fly; bilinear interpolation treats every query independently, so the values, and so the results, are the same.
Everything runs on the logits' device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from eomt.config import SCORE_DIGITS

CHUNK_BYTES = 256 * 2**20  # working memory per chunk of upsampled masks


@dataclass
class PanopticResult:
    segment_map: np.ndarray  # (H, W) int32 segment id, -1 = void
    class_map: np.ndarray  # (H, W) int32 class id, -1 = void
    segments: list[dict]  # {"id", "category_id", "isthing", "score", "area"}, ids 0, 1, 2, ... in acceptance order

    def coco(self) -> tuple[np.ndarray, list[dict]]:
        """The COCO panoptic form: an (H, W) int32 id map where 0 is void, so every id is ours + 1, and its
        segments_info [{"id", "category_id", "iscrowd", "isthing", "area", "score"}]."""
        segments = [{"id": int(s["id"]) + 1, "category_id": int(s["category_id"]), "iscrowd": 0,
                     "isthing": int(bool(s["isthing"])), "area": int(s["area"]),
                     "score": round(float(s["score"]), SCORE_DIGITS)} for s in self.segments]
        return self.segment_map.astype(np.int32) + 1, segments


def upsample_masks(mask_logits: torch.Tensor, img_size: int, resized_size: tuple[int, int],
                   original_size: tuple[int, int]) -> torch.Tensor:
    """(K, h, w) logits of a padded input -> (K, H, W) logits over the original image: to the input size,
    crop the padding away, to the original size (both bilinear, as the reference)."""
    # Upsampling only the rows and columns that survive the crop gives the same values, as long as the
    # scale stays the same and one more source row/column is kept for the last output's interpolation.
    factor = img_size // mask_logits.shape[-1]
    rows = min(mask_logits.shape[-2], -(-resized_size[0] // factor) + 1)
    cols = min(mask_logits.shape[-1], -(-resized_size[1] // factor) + 1)
    x = F.interpolate(mask_logits[None, :, :rows, :cols], (rows * factor, cols * factor), mode="bilinear",
                      align_corners=False)
    x = x[..., :resized_size[0], :resized_size[1]]
    return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)[0]


def _queries_per_chunk(img_size: int, original_size: tuple[int, int], bytes_per_pixel: int,
                       chunk_bytes: int) -> int:
    # Per query: the float mask at the input size, then bytes_per_pixel at the original size.
    per_query = 4 * img_size * img_size + bytes_per_pixel * original_size[0] * original_size[1]
    return max(1, chunk_bytes // per_query)


def _count_true(mask: torch.Tensor) -> torch.Tensor:
    """Per-row count of a (K, N) bool tensor. On CPU, torch casts every element to sum them; numpy's
    count is ~10x faster, and this count is a sizeable part of the panoptic merge."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.count_nonzero(mask.numpy(), axis=1))
    return mask.sum(1)


def panoptic_segmentation(mask_logits: torch.Tensor, class_logits: torch.Tensor, img_size: int,
                          resized_size: tuple[int, int], original_size: tuple[int, int], stuff_classes=(),
                          score_threshold: float = 0.8, overlap_threshold: float = 0.8,
                          mask_threshold: float = 0.5, chunk_bytes: int = CHUNK_BYTES) -> PanopticResult:
    """The Mask2Former-style panoptic merge of one image's (Q, h, w) mask and (Q, C+1) class logits.

    Queries whose best class is an object with probability > score_threshold compete for pixels by
    score * mask probability; in query order, a query becomes a segment when it owns pixels where its mask
    probability >= mask_threshold and owns at least overlap_threshold of its own mask's area. All segments
    of one stuff class merge into the first.
    """
    height, width = original_size
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.float().softmax(-1).max(-1)
    kept = ((labels != num_classes) & (scores > score_threshold)).nonzero()[:, 0]
    device = mask_logits.device

    # Per pixel: the kept query with the highest score * probability (the first on ties, as argmax) and
    # whether the pixel lies in that query's own mask; per query: the area of its own mask.
    best = torch.full((height * width,), -torch.inf, device=device)
    owner = torch.zeros(height * width, dtype=torch.long, device=device)
    inside = torch.zeros(height * width, dtype=torch.bool, device=device)  # in the owner's own mask
    mask_area = torch.zeros(len(kept), dtype=torch.long, device=device)
    step = _queries_per_chunk(img_size, original_size, 5, chunk_bytes)
    for start in range(0, len(kept), step):
        queries = kept[start:start + step]
        probs = upsample_masks(mask_logits[queries].float(), img_size, resized_size, original_size)
        probs = probs.sigmoid_().flatten(1)
        own_mask = probs >= mask_threshold
        mask_area[start:start + len(queries)] = _count_true(own_mask)
        value, index = probs.mul_(scores[queries, None]).max(0)  # in place: fresh pages are slow to fault in
        better = value > best  # strict: an earlier query keeps a tied pixel, as argmax does
        best = torch.where(better, value, best)
        owner = torch.where(better, index + start, owner)
        inside = torch.where(better, own_mask.gather(0, index[None])[0], inside)
        del probs, own_mask, value, index, better

    owned_area = torch.bincount(owner, minlength=len(kept)).tolist()
    owner = torch.where(inside, owner, len(kept))  # pixels outside their owner's own mask stay void
    final_area = torch.bincount(owner, minlength=len(kept) + 1)[:-1].tolist()
    stuff = set(stuff_classes)
    segment_of_query = [-1] * len(kept)
    segments: list[dict] = []
    stuff_segment: dict[int, dict] = {}
    for k, (label, score, area) in enumerate(zip(labels[kept].tolist(), scores[kept].tolist(),
                                                  mask_area.tolist(), strict=True)):
        if area == 0 or owned_area[k] == 0 or final_area[k] == 0 or owned_area[k] / area < overlap_threshold:
            continue
        if label in stuff_segment:
            segment = stuff_segment[label]
            segment["area"] += final_area[k]
        else:
            segment = {"id": len(segments), "category_id": label, "isthing": label not in stuff, "score": score,
                       "area": final_area[k]}
            segments.append(segment)
            if label in stuff:
                stuff_segment[label] = segment
        segment_of_query[k] = segment["id"]

    # One entry per kept query, plus a last one for void.
    segment_lut = torch.tensor(segment_of_query + [-1], dtype=torch.int32, device=device)
    class_lut = torch.tensor([segments[s]["category_id"] if s >= 0 else -1 for s in segment_of_query] + [-1],
                             dtype=torch.int32, device=device)
    return PanopticResult(segment_map=segment_lut[owner].view(height, width).cpu().numpy(),
                          class_map=class_lut[owner].view(height, width).cpu().numpy(), segments=segments)


def instance_segmentation(mask_logits: torch.Tensor, class_logits: torch.Tensor, img_size: int,
                          resized_size: tuple[int, int], original_size: tuple[int, int], top_k: int = 100,
                          chunk_bytes: int = CHUNK_BYTES) -> list[dict]:
    """The top_k (query, class) pairs by class probability (no-object dropped), each with mask = logit > 0
    and score = class probability x mean mask probability inside the mask; sorted by score, best first.
    Returns [{"mask": (H, W) bool, "category_id", "score"}]; pairs of one query share its mask array."""
    height, width = original_size
    class_probs = class_logits.float().softmax(-1)[:, :-1]
    num_classes = class_probs.shape[1]
    top_scores, flat = class_probs.flatten().topk(min(top_k, class_probs.numel()))
    queries, inverse = (flat // num_classes).unique(return_inverse=True)
    masks, mask_scores = [], []
    step = _queries_per_chunk(img_size, original_size, 13, chunk_bytes)
    for start in range(0, len(queries), step):
        logits = upsample_masks(mask_logits[queries[start:start + step]].float(), img_size, resized_size,
                                original_size).flatten(1)
        inside = logits > 0
        mask_scores.append((logits.sigmoid() * inside).sum(1) / (inside.sum(1) + 1e-6))
        masks.extend(inside.view(-1, height, width).cpu().numpy())
    scores = top_scores * torch.cat(mask_scores)[inverse]
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    labels, scores, inverse = (flat % num_classes).tolist(), scores.tolist(), inverse.tolist()
    return [{"mask": masks[inverse[j]], "category_id": labels[j], "score": scores[j]} for j in order]


def semantic_segmentation(mask_logits: torch.Tensor, class_logits: torch.Tensor, img_size: int,
                          window_starts: list[int], resized_size: tuple[int, int], original_size: tuple[int, int],
                          chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Sliding-window semantic map of one image from its windows' (n, Q, h, w) and (n, Q, C+1) logits.

    Per window, class scores = sum_q sigmoid(mask_q) * softmax(class_q) at the window size; windows are summed
    into the resized image, divided by the per-pixel window count, resized to the original size, argmax.
    Classes are done a group at a time, so a panorama does not need C full-size score maps at once.
    """
    height, width = original_size
    resized_h, resized_w = resized_size
    tall = resized_h > resized_w
    device = mask_logits.device
    class_probs = class_logits.float().softmax(-1)[..., :-1]
    num_classes = class_probs.shape[-1]
    count = torch.zeros(max(resized_size), device=device)
    for start in window_starts:
        count[start:start + img_size] += 1
    count = count[:, None] if tall else count[None, :]

    best = torch.full((height, width), -torch.inf, device=device)
    best_class = torch.zeros((height, width), dtype=torch.long, device=device)
    step = max(1, chunk_bytes // (4 * (resized_h * resized_w + height * width)))  # classes per pass
    for first in range(0, num_classes, step):
        classes = slice(first, min(first + step, num_classes))
        canvas = torch.zeros(classes.stop - first, resized_h, resized_w, device=device)
        for j, start in enumerate(window_starts):
            probs = F.interpolate(mask_logits[j:j + 1].float(), (img_size, img_size), mode="bilinear",
                                  align_corners=False)[0].sigmoid()
            scores = torch.einsum("qhw,qc->chw", probs, class_probs[j, :, classes])
            if tall:
                canvas[:, start:start + img_size, :] += scores
            else:
                canvas[:, :, start:start + img_size] += scores
        canvas /= count
        scores = F.interpolate(canvas[None], (height, width), mode="bilinear", align_corners=False)[0]
        value, index = scores.max(0)
        better = value > best  # strict: the lower class id keeps a tie, as argmax
        best = torch.where(better, value, best)
        best_class = torch.where(better, index + first, best_class)
    return best_class.to(torch.int32).cpu().numpy()
