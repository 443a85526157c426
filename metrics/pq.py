"""Panoptic quality exactly as panopticapi's `pq_compute` defines it, one image at a time.

`match_image` matches one image's segments (an `ImageMatch`: per segment, matched / false positive / false
negative, and the intersection matrix), `image_counts` (`match_counts` of a match) sums that into per-category
counts (tp, fp, fn, iou_sum), `sum_counts` adds them over images, and `pq_summary` turns counts into per-class
PQ/SQ/RQ and the All/Things/Stuff averages over the active categories. The viewer's per-segment matching is
`match_image` too. The rules (docs/metrics.md, "Panoptic quality"):

- a (gt, pred) pair matches when the gt segment is not crowd, the categories are equal and IoU > 0.5, where the
  union leaves out the prediction's pixels on gt void;
- an unmatched non-crowd gt segment is a false negative;
- an unmatched prediction is a false positive unless more than half of it lies on gt void or on a crowd region of
  its own category;
- per category PQ = iou_sum / (tp + fp/2 + fn/2); averages are plain means over categories with tp + fp + fn > 0.

Instead of panopticapi's dictionary of (gt, pred) pairs, the pixels are relabelled to compact segment indices and
counted with one `np.bincount` into a small intersection matrix; everything after that works on the matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

VOID = 0
# Maps whose largest id is below this are relabelled with a lookup table, larger ids by binary search.
_LUT_LIMIT = 1 << 16
MAX_CELLS = 1 << 28  # of one image's intersection matrix (its cells are int32 keys)


class PanopticFormatError(ValueError):
    """A segment map and its segment list disagree (panopticapi raises KeyError for these)."""


@dataclass
class CategoryCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0
    gt_segments: int = 0  # non-crowd ground-truth segments of the category
    pred_segments: int = 0

    def __add__(self, other: CategoryCounts) -> CategoryCounts:
        return CategoryCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                              self.iou_sum + other.iou_sum, self.gt_segments + other.gt_segments,
                              self.pred_segments + other.pred_segments)


def segment_indices(segment_map: np.ndarray, ids: np.ndarray, unknown: int) -> np.ndarray:
    """Flat int32 array, per pixel: 0 for void, k + 1 for ids[k], `unknown` for an id that is not in `ids`.
    `ids` must be distinct and positive."""
    segment_map = segment_map.ravel()
    if segment_map.size == 0:
        return np.zeros(0, dtype=np.int32)
    top = int(segment_map.max())
    if segment_map.dtype.kind == "i" and int(segment_map.min()) < 0:
        raise PanopticFormatError("segment ids must not be negative")
    if top < _LUT_LIMIT:
        # A table indexed by the id itself; int32 with np.take is measurably faster here than an intp table.
        lut = np.full(top + 1, unknown, dtype=np.int32)
        lut[VOID] = 0
        listed = ids <= top
        lut[ids[listed]] = np.flatnonzero(listed) + 1
        return np.take(lut, segment_map)
    # Ids up to 2**24 - 1 (as read from COCO PNGs): binary search among the few listed ids, with void in front.
    # Ids above the map's largest cannot occur; leaving them out lets the search run in the map's own dtype,
    # which is over twice as fast as letting numpy cast every pixel.
    order = np.flatnonzero(ids <= top)
    order = order[np.argsort(ids[order])]
    values = np.concatenate([[VOID], ids[order]]).astype(segment_map.dtype)
    index = np.concatenate([[0], order + 1]).astype(np.int32)
    position = np.minimum(np.searchsorted(values, segment_map), len(values) - 1)
    return np.where(values[position] == segment_map, index[position], np.int32(unknown))


def _pair_counts(gt_map: np.ndarray, gt_ids: np.ndarray, pred_map: np.ndarray, pred_ids: np.ndarray) -> np.ndarray:
    """(len(gt_ids) + 2, len(pred_ids) + 2) int64 pixel counts per (gt, pred) pair, indexed as segment_indices
    labels them (0 = void, last = not listed)."""
    n_gt, n_pred = len(gt_ids), len(pred_ids)
    gt, pred = gt_map.ravel(), pred_map.ravel()
    # Segment maps are piecewise constant: a pixel run along which both ids stay the same is labelled and counted
    # once, weighted by its length. An ADE20K-sized pair has a few thousand such runs for 350,000 pixels, so
    # only the two comparisons below touch every pixel.
    run_start = np.empty(gt.size, dtype=bool)
    run_start[:1] = True
    np.not_equal(gt[1:], gt[:-1], out=run_start[1:])
    run_start[1:] |= pred[1:] != pred[:-1]
    starts = np.flatnonzero(run_start)
    lengths = np.diff(starts, append=gt.size)
    key = segment_indices(gt[starts], gt_ids, n_gt + 1)
    key *= n_pred + 2
    key += segment_indices(pred[starts], pred_ids, n_pred + 1)
    # Float weights hold the integer sums exactly (far below 2**53 pixels).
    matrix = np.bincount(key, weights=lengths, minlength=(n_gt + 2) * (n_pred + 2))
    return matrix.astype(np.int64).reshape(n_gt + 2, n_pred + 2)


def _ids(segments: Sequence[Mapping], which: str) -> np.ndarray:
    ids = [s["id"] for s in segments]
    if len(set(ids)) != len(ids):
        raise PanopticFormatError(f"{which} segment ids are not unique: {sorted(ids)}")
    if ids and min(ids) <= VOID:
        raise PanopticFormatError(f"{which} segment ids must be positive (0 is void): {sorted(ids)}")
    return np.array(ids, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ImageMatch:
    """panopticapi's matching of one image, kept per segment.

    Rows are the ground-truth segments in ascending id order, columns the predicted segments in their list's order;
    `matrix` has void in row / column 0 and, in its last row, the ground-truth pixels whose ids are not in the
    segment list (its last column, predicted ids not in their list, is all zero: those raise). The matched pairs
    are sorted by row, the order panopticapi adds their IoUs in; a segment is in at most one of them unless
    gt_areas_from_json makes IoUs over 0.5 non-exclusive.
    """

    gt_ids: np.ndarray  # (n_gt,) int64, ascending
    gt_category: np.ndarray  # (n_gt,) int64
    gt_crowd: np.ndarray  # (n_gt,) bool: iscrowd == 1
    gt_area: np.ndarray  # (n_gt,) pixels in the map, or the JSON's "area" with gt_areas_from_json
    pred_ids: np.ndarray  # (n_pred,) int64, in pred_segments' order
    pred_category: np.ndarray  # (n_pred,) int64
    pred_area: np.ndarray  # (n_pred,) pixels in the map, all > 0
    matrix: np.ndarray  # (n_gt + 2, n_pred + 2) pixel counts per (gt, pred) pair
    crowd_row: dict[int, int]  # category id -> row of the crowd segment panopticapi remembers for it
    matched_rows: np.ndarray  # (n_tp,) row of each matched pair
    matched_cols: np.ndarray  # (n_tp,) its column
    matched_iou: np.ndarray  # (n_tp,) float64 IoU
    gt_matched: np.ndarray  # (n_gt,) bool
    pred_matched: np.ndarray  # (n_pred,) bool
    false_negative: np.ndarray  # (n_gt,) bool: unmatched and not crowd
    false_positive: np.ndarray  # (n_pred,) bool: unmatched and not mostly on void or its category's crowd region

    @property
    def intersection(self) -> np.ndarray:
        """(n_gt, n_pred) pixels shared by each pair of listed segments."""
        return self.matrix[1:-1, 1:-1]

    @property
    def pred_on_void(self) -> np.ndarray:
        """(n_pred,) pixels of each prediction on ground-truth void."""
        return self.matrix[0, 1:-1]

    @property
    def pred_on_unlisted(self) -> np.ndarray:
        """(n_pred,) pixels of each prediction on ground-truth ids that are not in the segment list (not void)."""
        return self.matrix[-1, 1:-1]

    @property
    def pred_ignored(self) -> np.ndarray:
        """(n_pred,) bool: unmatched, but mostly on void or on its category's crowd region, so not a false positive."""
        return ~self.pred_matched & ~self.false_positive


def match_image(gt_map: np.ndarray, gt_segments: Sequence[Mapping], pred_map: np.ndarray,
                pred_segments: Sequence[Mapping], gt_areas_from_json: bool = False) -> ImageMatch:
    """panopticapi's segment matching of one image (the rules above).

    Maps are (H, W) integer segment ids, 0 = void. Segments are dicts with "id" and "category_id" (gt ones may
    carry "iscrowd", default 0). Prediction areas are pixel counts of the map, as in panopticapi. Ground-truth
    areas too, unless `gt_areas_from_json`: then each gt segment's "area" is used, which is what panopticapi does
    (and why a JSON with areas counted before things were painted over stuff scores a perfect prediction SQ < 1).
    Ground-truth ids that are in the map but not in `gt_segments` are ignored, not void (panopticapi again).
    Raises PanopticFormatError where panopticapi would fail.
    """
    if gt_map.shape != pred_map.shape:
        raise PanopticFormatError(f"ground truth is {gt_map.shape} but prediction is {pred_map.shape}")
    # panopticapi remembers one crowd segment per category: the last one in the JSON's order.
    crowd_id = {s["category_id"]: s["id"] for s in gt_segments if s.get("iscrowd", 0) == 1}
    # Rows follow ascending gt id, so IoUs are added in the order panopticapi adds them.
    gt_segments = sorted(gt_segments, key=lambda s: s["id"])
    gt_ids, pred_ids = _ids(gt_segments, "ground-truth"), _ids(pred_segments, "predicted")
    n_gt, n_pred = len(gt_ids), len(pred_ids)

    # Intersection matrix: row 0 / column 0 = void, last row / column = ids missing from the segment lists.
    # Its cells are counted in int32 keys; real images have tens to hundreds of segments, far from the limit.
    if (n_gt + 2) * (n_pred + 2) > MAX_CELLS:
        raise PanopticFormatError(f"too many segments for one image ({n_gt} ground truth x {n_pred} predicted)")
    matrix = _pair_counts(gt_map, gt_ids, pred_map, pred_ids)

    if matrix[:, -1].any():
        known = set(pred_ids.tolist()) | {VOID}
        missing = sorted(set(np.unique(pred_map).tolist()) - known)
        raise PanopticFormatError(f"segment with ID {missing[0]} is presented in PNG and not presented in JSON")
    pred_area = matrix[:, 1:-1].sum(axis=0)
    if not pred_area.all():
        raise PanopticFormatError(f"the following segment IDs {pred_ids[pred_area == 0].tolist()} are presented in "
                                  "JSON and not presented in PNG")
    if gt_areas_from_json:
        if any("area" not in s for s in gt_segments):
            raise PanopticFormatError("a ground-truth segment has no 'area' (needed with gt_areas_from_json)")
        gt_area = np.array([s["area"] for s in gt_segments], dtype=np.int64)
    else:
        gt_area = matrix[1:-1, :].sum(axis=1)
    on_void = matrix[0, 1:-1]
    intersection = matrix[1:-1, 1:-1]

    gt_category = np.array([s["category_id"] for s in gt_segments], dtype=np.int64)
    gt_crowd = np.array([s.get("iscrowd", 0) == 1 for s in gt_segments], dtype=bool)
    pred_category = np.array([s["category_id"] for s in pred_segments], dtype=np.int64)

    # Matching. IoU > 0.5 makes a match unique per segment when areas are true pixel counts; with JSON areas it
    # may not be, and then every pair over 0.5 counts, as in panopticapi.
    candidate = (intersection > 0) & (gt_category[:, None] == pred_category[None, :]) & ~gt_crowd[:, None]
    rows, cols = np.nonzero(candidate)
    inter = intersection[rows, cols]
    union = pred_area[cols] + gt_area[rows] - inter - on_void[cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    matched = iou > 0.5
    rows, cols, iou = rows[matched], cols[matched], iou[matched]
    gt_matched = np.zeros(n_gt, dtype=bool)
    gt_matched[rows] = True
    pred_matched = np.zeros(n_pred, dtype=bool)
    pred_matched[cols] = True

    crowd_row = {category_id: int(np.searchsorted(gt_ids, segment_id)) for category_id, segment_id in crowd_id.items()}
    ignored = on_void.copy()
    if crowd_row:
        for col in np.flatnonzero(~pred_matched):
            row = crowd_row.get(int(pred_category[col]))
            if row is not None:
                ignored[col] += intersection[row, col]
    false_positive = ~pred_matched & ~(ignored / pred_area > 0.5)
    false_negative = ~gt_matched & ~gt_crowd
    return ImageMatch(gt_ids, gt_category, gt_crowd, gt_area, pred_ids, pred_category, pred_area, matrix, crowd_row,
                      rows, cols, iou, gt_matched, pred_matched, false_negative, false_positive)


def image_counts(gt_map: np.ndarray, gt_segments: Sequence[Mapping], pred_map: np.ndarray,
                 pred_segments: Sequence[Mapping], gt_areas_from_json: bool = False) -> dict[int, CategoryCounts]:
    """Per-category counts of one image: `match_image` (same arguments, same errors) summed per category.
    Returns only categories with some activity (any count non-zero)."""
    return match_counts(match_image(gt_map, gt_segments, pred_map, pred_segments, gt_areas_from_json))


def match_counts(match: ImageMatch) -> dict[int, CategoryCounts]:
    """Per-category counts of one image's match (what image_counts returns), for callers that keep the match."""
    gt_category, pred_category = match.gt_category.tolist(), match.pred_category.tolist()
    counts: dict[int, CategoryCounts] = {}

    def category(category_id: int) -> CategoryCounts:
        c = counts.get(category_id)
        if c is None:
            c = counts[category_id] = CategoryCounts()
        return c

    # Matches in row order: the order panopticapi adds their IoUs in.
    for row, value in zip(match.matched_rows.tolist(), match.matched_iou.tolist(), strict=True):
        c = category(gt_category[row])
        c.tp += 1
        c.iou_sum += value
    for category_id, fn, crowd in zip(gt_category, match.false_negative.tolist(), match.gt_crowd.tolist(),
                                      strict=True):
        if not crowd:
            c = category(category_id)
            c.fn += fn
            c.gt_segments += 1
    for category_id, fp in zip(pred_category, match.false_positive.tolist(), strict=True):
        c = category(category_id)
        c.fp += fp
        c.pred_segments += 1
    return counts


def sum_counts(per_image: Iterable[Mapping[int, CategoryCounts]]) -> dict[int, CategoryCounts]:
    """Adds per-image counts category by category, image by image (the order panopticapi adds them in)."""
    total: dict[int, CategoryCounts] = {}
    for counts in per_image:
        for category_id, c in counts.items():
            total[category_id] = total[category_id] + c if category_id in total else c + CategoryCounts()
    return total


def pq_denominator(tp, fp, fn):
    """tp + fp/2 + fn/2, PQ's denominator (iou_sum over it is PQ; > 0 exactly when a category is active), in
    panopticapi's order of operations; scalars or arrays."""
    return tp + 0.5 * fp + 0.5 * fn


def quality(tp, fp, fn, iou_sum):
    """(PQ, SQ, RQ) of a category's counts; scalars or arrays of categories alike (elementwise).

    The expressions are panopticapi's, in float64, so results agree to the last bit; PQ is not SQ * RQ. SQ is 0
    without a TP; PQ and RQ are NaN (arrays) or ZeroDivisionError (scalars) for a category with no activity."""
    if all(isinstance(v, int | float | np.number) for v in (tp, fp, fn, iou_sum)):
        denominator = pq_denominator(tp, fp, fn)
        return iou_sum / denominator, iou_sum / tp if tp != 0 else 0.0, tp / denominator
    tp, fp, fn, iou_sum = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn, iou_sum))
    denominator = pq_denominator(tp, fp, fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        return iou_sum / denominator, np.where(tp != 0, iou_sum / np.where(tp != 0, tp, 1), 0.0), tp / denominator


def _class_metrics(c: CategoryCounts) -> dict:
    pq_value, sq_value, rq_value = quality(c.tp, c.fp, c.fn, c.iou_sum)
    return {"pq": pq_value, "sq": sq_value, "rq": rq_value, "tp": c.tp, "fp": c.fp, "fn": c.fn,
            "iou_sum": c.iou_sum}


def pq_summary(counts: Mapping[int, CategoryCounts], categories: Mapping[int, bool]) -> dict:
    """PQ/SQ/RQ per active category and their means over All, Things and Stuff.

    `categories` maps every category id to its isthing flag; its order is the order of the means (as panopticapi
    iterates its categories). A category is active when tp + fp + fn > 0; only active ones are in "per_class".
    A group without active categories has n = 0 and pq/sq/rq None (panopticapi would divide by zero).
    """
    unknown = sorted(set(counts) - set(categories))
    if unknown:
        raise PanopticFormatError(f"unknown category_id {unknown[0]} (not among the {len(categories)} categories)")
    per_class = {}
    for category_id in categories:
        c = counts.get(category_id)
        if c is not None and c.tp + c.fp + c.fn > 0:
            per_class[category_id] = _class_metrics(c)
    summary: dict = {}
    for group, wanted in (("All", None), ("Things", True), ("Stuff", False)):
        members = [m for k, m in per_class.items() if wanted is None or bool(categories[k]) == wanted]
        n = len(members)
        summary[group] = {key: sum(m[key] for m in members) / n if n else None for key in ("pq", "sq", "rq")}
        summary[group]["n"] = n
    summary["per_class"] = per_class
    return summary
