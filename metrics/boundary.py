"""Boundary PQ (Cheng et al., CVPR 2021, "Boundary IoU"), as boundary-iou-api's panoptic evaluation computes it.

A segment's boundary is its mask minus the mask eroded d times with a 3x3 square, the image border counting as
outside; d = max(1, round(0.02 x image diagonal)) with Python's round. A (gt, pred) pair of the same category
scores min(mask IoU, boundary IoU), where boundary IoU = |Bg ∩ Bp| / (|Bg| + |Bp| - |Bg ∩ Bp| - |Bp on gt void|),
and is a TP when that minimum is over 0.5. False negatives, false positives, crowd and void follow PQ's rules (a
prediction more than half on void or on its category's crowd region is no false positive).

Since min(mask IoU, boundary IoU) > 0.5 needs mask IoU > 0.5, only the pairs PQ matched can be boundary TPs:
boundaries are computed for those segments alone, each inside its bounding box.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage  # find_objects: every segment's bounding box in one pass

from metrics import pq


def boundary_width(height: int, width: int, ratio: float = 0.02) -> int:
    """d = max(1, round(ratio x diagonal)), rounding half to even (a 75x100 image has d = 2)."""
    return max(1, int(round(ratio * math.sqrt(height * height + width * width))))


def _all_in_window(mask: np.ndarray, width: int, axis: int) -> np.ndarray:
    """out[i] = all of mask[i - width .. i + width] along `axis` (0 or 1), False where that window leaves the array.

    The window's AND is built by doubling (windows of 1, 2, 4, ... pixels, then the binary digits of its length
    joined end to end): a dozen vectorised ANDs of whole slices, over twice as fast as scipy's minimum filter."""
    size, length = 2 * width + 1, mask.shape[axis]
    out = np.zeros_like(mask)
    if length < size:
        return out

    def part(array: np.ndarray, start: int, count: int) -> np.ndarray:
        return array[start:start + count] if axis == 0 else array[:, start:start + count]

    n_out = length - size + 1
    result, offset, span, window, remaining = None, 0, 1, mask, size
    while True:  # invariant: window[i] = all of mask[i .. i + span - 1]
        if remaining & 1:
            piece = part(window, offset, n_out)
            result = piece.copy() if result is None else np.logical_and(result, piece, out=result)
            offset += span
        remaining >>= 1
        if not remaining:
            break
        count = window.shape[axis] - span
        window = part(window, 0, count) & part(window, span, count)
        span *= 2
    if axis == 0:
        out[width:width + n_out] = result
    else:
        out[:, width:width + n_out] = result
    return out


def mask_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """The boundary of a 2-D bool mask: the mask minus its erosion by a (2 width + 1) square (the same as `width`
    erosions by a 3x3 one), pixels outside the array counting as outside the mask. A crop of a bigger mask gives
    the same pixels as long as the mask has nothing outside the crop except beyond the image border."""
    return mask & ~_all_in_window(_all_in_window(mask, width, 0), width, 1)


def _labels(segment_map: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A label image for find_objects (0 = void) and the label of each id: the map itself when its ids are small
    enough for a list of boxes indexed by id, else compact indices."""
    if segment_map.size and int(segment_map.max()) < 1 << 16:
        return segment_map, ids
    return pq.segment_indices(segment_map, ids, len(ids) + 1).reshape(segment_map.shape), np.arange(1, len(ids) + 1)


def _slices_overlap(a: tuple[slice, slice], b: tuple[slice, slice]):
    """The overlap of two boxes in each box's own coordinates, or None when they do not meet."""
    starts = [max(p.start, q.start) for p, q in zip(a, b, strict=True)]
    stops = [min(p.stop, q.stop) for p, q in zip(a, b, strict=True)]
    if any(start >= stop for start, stop in zip(starts, stops, strict=True)):
        return None
    local = lambda box: tuple(slice(s - p.start, e - p.start) for s, e, p in zip(starts, stops, box, strict=True))  # noqa: E731
    return local(a), local(b)


def boundary_ious(match: pq.ImageMatch, gt_map: np.ndarray, pred_map: np.ndarray,
                  width: int | None = None) -> np.ndarray:
    """(n_tp,) boundary IoU of each pair PQ matched (match.matched_rows / matched_cols), on the maps the match
    was computed from. `width` defaults to boundary_width of the image."""
    rows, cols = match.matched_rows, match.matched_cols
    if len(rows) == 0:
        return np.zeros(0)
    height, image_width = gt_map.shape
    width = boundary_width(height, image_width) if width is None else width
    gt_labels, gt_label = _labels(gt_map, match.gt_ids)
    pred_labels, pred_label = _labels(pred_map, match.pred_ids)
    gt_boxes = ndimage.find_objects(gt_labels, max_label=int(gt_label[rows].max()))
    pred_boxes = ndimage.find_objects(pred_labels, max_label=int(pred_label[cols].max()))

    gt_boundary, pred_boundary = {}, {}  # row / column -> (box, boundary in it, its size[, pixels on gt void])
    for row in np.unique(rows).tolist():
        box = gt_boxes[gt_label[row] - 1]
        boundary = mask_boundary(gt_labels[box] == gt_label[row], width)
        gt_boundary[row] = box, boundary, np.count_nonzero(boundary)
    for col in np.unique(cols).tolist():
        box = pred_boxes[pred_label[col] - 1]
        boundary = mask_boundary(pred_labels[box] == pred_label[col], width)
        on_void = np.count_nonzero(boundary & (gt_labels[box] == 0))
        pred_boundary[col] = box, boundary, np.count_nonzero(boundary), on_void

    ious = np.empty(len(rows))
    for k, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        (gt_box, bg, bg_size), (pred_box, bp, bp_size, bp_on_void) = gt_boundary[row], pred_boundary[col]
        overlap = _slices_overlap(gt_box, pred_box)
        inter = np.count_nonzero(bg[overlap[0]] & bp[overlap[1]]) if overlap else 0
        ious[k] = inter / (bg_size + bp_size - inter - bp_on_void)
    return ious


def ignored_predictions(match: pq.ImageMatch) -> np.ndarray:
    """(n_pred,) bool: more than half of the prediction on gt void or on its category's crowd region (PQ's rule
    for an unmatched prediction that is no false positive), evaluated for every prediction."""
    ignored = match.pred_on_void.astype(np.int64)
    for col, category_id in enumerate(match.pred_category.tolist()):
        row = match.crowd_row.get(category_id)
        if row is not None:
            ignored[col] += match.intersection[row, col]
    return ignored / match.pred_area > 0.5


def boundary_counts(match: pq.ImageMatch, ious: np.ndarray) -> dict[int, pq.CategoryCounts]:
    """Per-category tp, fp, fn, iou_sum of one image under boundary matching, from its PQ match and the
    boundary IoUs of the matched pairs (boundary_ious). Only categories with some count are returned."""
    score = np.minimum(match.matched_iou, ious)
    keep = score > 0.5
    gt_hit = np.zeros(len(match.gt_ids), dtype=bool)
    gt_hit[match.matched_rows[keep]] = True
    pred_hit = np.zeros(len(match.pred_ids), dtype=bool)
    pred_hit[match.matched_cols[keep]] = True
    counts: dict[int, pq.CategoryCounts] = {}

    def category(category_id) -> pq.CategoryCounts:
        return counts.setdefault(int(category_id), pq.CategoryCounts())

    # Added one by one in the match's order (ascending gt id), the order the reference adds them in.
    for row, value in zip(match.matched_rows[keep].tolist(), score[keep].tolist(), strict=True):
        c = category(match.gt_category[row])
        c.tp += 1
        c.iou_sum += value
    for category_id in match.gt_category[~gt_hit & ~match.gt_crowd]:
        category(category_id).fn += 1
    for category_id in match.pred_category[~pred_hit & ~ignored_predictions(match)]:
        category(category_id).fp += 1
    return counts
