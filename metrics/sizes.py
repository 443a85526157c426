"""PQ by object size: COCO's area bins, small < 32^2, medium < 96^2, large otherwise (pixels at the original
resolution). A TP and a false negative count in the bin of the ground-truth segment, a false positive in the bin
of the predicted segment; PQ/SQ/RQ per bin come from counts summed over images, as for PQ itself."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metrics import pq

SIZE_BINS = ("small", "medium", "large")
BIN_EDGES = (32**2, 96**2)  # first area of medium, first area of large


def size_bin(area: np.ndarray) -> np.ndarray:
    """Index into SIZE_BINS of each area."""
    return np.searchsorted(BIN_EDGES, np.asarray(area), side="right")


def size_counts(match: pq.ImageMatch) -> dict[str, dict[int, pq.CategoryCounts]]:
    """Per size bin, per-category tp, fp, fn, iou_sum of one image (bins and categories without counts are
    left out). Areas are the match's (gt_area, pred_area)."""
    gt_bin, pred_bin = size_bin(match.gt_area), size_bin(match.pred_area)
    counts: dict[str, dict[int, pq.CategoryCounts]] = {}

    def category(which: int, category_id) -> pq.CategoryCounts:
        return counts.setdefault(SIZE_BINS[which], {}).setdefault(int(category_id), pq.CategoryCounts())

    for row, value in zip(match.matched_rows.tolist(), match.matched_iou.tolist(), strict=True):
        c = category(gt_bin[row], match.gt_category[row])
        c.tp += 1
        c.iou_sum += value
    for row in np.flatnonzero(match.false_negative).tolist():
        category(gt_bin[row], match.gt_category[row]).fn += 1
    for col in np.flatnonzero(match.false_positive).tolist():
        category(pred_bin[col], match.pred_category[col]).fp += 1
    return counts


def size_summary(counts: Mapping[str, Mapping[int, pq.CategoryCounts]], categories: Mapping[int, bool],
                 things_only: bool = False) -> dict:
    """{bin: pq.pq_summary of that bin's summed counts} for every bin; `things_only` keeps thing categories
    (the usual report)."""
    selected = {k: isthing for k, isthing in categories.items() if isthing} if things_only else categories
    return {name: pq.pq_summary({k: c for k, c in counts.get(name, {}).items()
                                 if not things_only or categories.get(k)}, selected)
            for name in SIZE_BINS}
