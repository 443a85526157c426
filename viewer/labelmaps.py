"""Label maps of one image, decoded from the folder's panoptic PNGs and annotations, and their segment matching.

Decoded maps are cached by file (path, size, modification time): every session that looks at an image reuses
them, and a file rewritten by a running dump is decoded again. The cache holds only what the files say, so
sessions cannot see each other's state through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from metrics.coco_panoptic import read_png
from metrics.output_folder import GT, FolderError
from metrics.render import segments_to_class_map

VOID = 0
_CACHED_MAPS = 48  # ~3 MB each at ADE20K size: enough for a dozen sessions on 4 models


class LabelMapError(ValueError):
    """A label map that cannot be shown; the message says which file and why."""


@dataclass(frozen=True, eq=False)  # hashed by identity: the match cache is keyed by the cached maps
class LabelMap:
    segment_map: np.ndarray  # (H, W) int32 COCO segment ids, 0 = void
    class_map: np.ndarray  # (H, W) int32 class ids, -1 = void (ids without a segment entry are void too)
    segments: dict[int, dict]  # id -> segments_info entry

    @property
    def shape(self) -> tuple[int, int]:
        return self.segment_map.shape


def label_map(segment_map: np.ndarray, segments: list[dict]) -> LabelMap:
    """A LabelMap from a segment id map (0 = void) and its segments_info."""
    segment_map = np.ascontiguousarray(segment_map, dtype=np.int32)
    class_map = segments_to_class_map(segment_map, segments)
    for array in (segment_map, class_map):
        array.flags.writeable = False  # shared through the cache
    return LabelMap(segment_map, class_map, {int(s["id"]): s for s in segments})


@lru_cache(maxsize=_CACHED_MAPS)
def _decode(path: str, size: int, mtime_ns: int, segments: tuple) -> LabelMap:
    return label_map(read_png(path), [dict(s) for s in segments])


def load_label_map(index, pos: int, source: str, cached: bool = True) -> LabelMap:
    """Ground truth (source "gt") or a model's label map of the image at `pos`; LabelMapError when it is
    missing or unreadable. `cached=False` for sweeps over many images, which would only evict what the
    sessions are looking at."""
    image = index.images[pos]
    label = "ground truth" if source == GT else source
    try:
        segments = index.segments(source, pos)
    except FolderError as e:
        raise LabelMapError(str(e)) from None
    path = index.layout.panoptic_png(image, source)
    try:
        stat = os.stat(path)
        if cached:
            frozen = tuple(tuple(sorted((k, v) for k, v in s.items() if not isinstance(v, list))) for s in segments)
            labels = _decode(str(path), stat.st_size, stat.st_mtime_ns, frozen)
        else:
            labels = label_map(read_png(path), segments)
    except (OSError, ValueError) as e:
        raise LabelMapError(f"{label}: {e}") from None
    entry = index.manifest["images"][pos]
    expected = (entry.get("height"), entry.get("width"))
    if None not in expected and labels.shape != expected:
        raise LabelMapError(f"{label}: {path.name} is {labels.shape[1]}x{labels.shape[0]}, the image is "
                            f"{expected[1]}x{expected[0]}")
    return labels


@dataclass(frozen=True)
class SegmentMatch:
    """Per segment, what panopticapi's matching made of it.

    gt: id -> ("TP", pred id, IoU) | ("FN", None, None) | ("crowd", None, None)
    pred: id -> ("TP", gt id, IoU) | ("FP", None, None) | ("ignored", None, None) (mostly on void or crowd)
    fp_cover: FP pred id -> (ground-truth class id covering most of it or None for void, those pixels)
    """

    gt: dict[int, tuple]
    pred: dict[int, tuple]
    fp_cover: dict[int, tuple]


def _compact(segment_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per pixel: 0 for void or an id without a segment entry, k + 1 for ids[k]."""
    order = np.argsort(ids)
    sorted_ids = ids[order]
    flat = segment_map.ravel()
    position = np.minimum(np.searchsorted(sorted_ids, flat), max(len(ids) - 1, 0))
    hit = (sorted_ids[position] == flat) & (flat != VOID) if len(ids) else np.zeros(flat.shape, bool)
    return np.where(hit, order[position] + 1, 0)


def match_segments(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    """panopticapi's matching (ade20k-pq-reference.md section 4), kept per segment rather than per class: same
    category, gt not crowd, IoU > 0.5 with the union leaving out the prediction's pixels on gt void; an unmatched
    prediction is ignored when more than half of it lies on gt void or on a crowd region of its own category.
    Its per-class totals equal metrics.pq.image_counts (a test holds them together)."""
    gt_ids = np.array(sorted(gt.segments), dtype=np.int64)
    pred_ids = np.array(sorted(pred.segments), dtype=np.int64)
    n_gt, n_pred = len(gt_ids), len(pred_ids)
    key = _compact(gt.segment_map, gt_ids) * (n_pred + 1) + _compact(pred.segment_map, pred_ids)
    matrix = np.bincount(key, minlength=(n_gt + 1) * (n_pred + 1)).reshape(n_gt + 1, n_pred + 1)
    gt_area, pred_area = matrix[1:, :].sum(axis=1), matrix[:, 1:].sum(axis=0)
    on_void, intersection = matrix[0, 1:], matrix[1:, 1:]
    gt_category = np.array([gt.segments[i]["category_id"] for i in gt_ids.tolist()], dtype=np.int64)
    gt_crowd = np.array([bool(gt.segments[i].get("iscrowd", 0)) for i in gt_ids.tolist()], dtype=bool)
    pred_category = np.array([pred.segments[i]["category_id"] for i in pred_ids.tolist()], dtype=np.int64)

    gt_status: dict[int, tuple] = {}
    pred_status: dict[int, tuple] = {}
    rows, cols = np.nonzero((intersection > 0) & (gt_category[:, None] == pred_category[None, :])
                            & ~gt_crowd[:, None])
    inter = intersection[rows, cols]
    union = pred_area[cols] + gt_area[rows] - inter - on_void[cols]
    iou = inter / np.maximum(union, 1)
    for row, col, value in zip(rows.tolist(), cols.tolist(), iou.tolist(), strict=True):
        if value > 0.5:
            gt_status[int(gt_ids[row])] = ("TP", int(pred_ids[col]), value)
            pred_status[int(pred_ids[col])] = ("TP", int(gt_ids[row]), value)
    for row, segment_id in enumerate(gt_ids.tolist()):
        if segment_id not in gt_status:
            gt_status[segment_id] = ("crowd", None, None) if gt_crowd[row] else ("FN", None, None)

    crowd_rows = {int(gt_category[r]): r for r in np.flatnonzero(gt_crowd)}
    fp_cover: dict[int, tuple] = {}
    for col, segment_id in enumerate(pred_ids.tolist()):
        if segment_id in pred_status:
            continue
        ignored = on_void[col]
        crowd_row = crowd_rows.get(int(pred_category[col]))
        if crowd_row is not None:
            ignored += intersection[crowd_row, col]
        if pred_area[col] and ignored / pred_area[col] > 0.5:
            pred_status[segment_id] = ("ignored", None, None)
            continue
        pred_status[segment_id] = ("FP", None, None)
        by_class: dict[int, int] = {}
        for row in np.flatnonzero(intersection[:, col]).tolist():
            by_class[int(gt_category[row])] = by_class.get(int(gt_category[row]), 0) + int(intersection[row, col])
        best = max(by_class.items(), key=lambda item: (item[1], -item[0]), default=(None, 0))
        fp_cover[segment_id] = best if best[1] >= on_void[col] else (None, int(on_void[col]))
    return SegmentMatch(gt_status, pred_status, fp_cover)


@lru_cache(maxsize=_CACHED_MAPS)
def _cached_match(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    return match_segments(gt, pred)


def cached_match(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    """match_segments, remembered for the maps the cache holds (the inspector asks once per click)."""
    return _cached_match(gt, pred)
