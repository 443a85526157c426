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

from dump.folder import GT, FolderError
from eomt.render import segments_to_class_map
from metrics import pq
from metrics.coco_panoptic import read_png
from metrics.errors import classify, segment_records

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


def load_label_map(folder, pos: int, source: str, cached: bool = True) -> LabelMap:
    """Ground truth (source "gt") or a model's label map of the image at `pos`; LabelMapError when it is
    missing or unreadable. `cached=False` for sweeps over many images, which would only evict what the
    sessions are looking at."""
    image = folder.images[pos]
    label = "ground truth" if source == GT else source
    try:
        segments = folder.segments(source, pos)
    except FolderError as e:
        raise LabelMapError(str(e)) from None
    path = folder.layout.panoptic_png(image, source)
    try:
        stat = os.stat(path)
        if cached:
            frozen = tuple(tuple(sorted((k, v) for k, v in s.items() if not isinstance(v, list))) for s in segments)
            labels = _decode(str(path), stat.st_size, stat.st_mtime_ns, frozen)
        else:
            labels = label_map(read_png(path), segments)
    except (OSError, ValueError) as e:
        raise LabelMapError(f"{label}: {e}") from None
    entry = folder.manifest["images"][pos]
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
    gt_error / pred_error: FN gt id / FP pred id -> (error type, linked segment id of the other side, 0 = none),
    metrics.errors' types (docs/metrics.md), the ones the dump stores in segment_errors.csv
    """

    gt: dict[int, tuple]
    pred: dict[int, tuple]
    fp_cover: dict[int, tuple]
    gt_error: dict[int, tuple[str, int]]
    pred_error: dict[int, tuple[str, int]]


def match_segments(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    """panopticapi's matching (docs/metrics.md), kept per segment rather than per class: same
    category, gt not crowd, IoU > 0.5 with the union leaving out the prediction's pixels on gt void; an unmatched
    prediction is ignored when more than half of it lies on gt void or on a crowd region of its own category.
    It is metrics.pq.match_image, the matching behind metrics.pq.image_counts, so its per-class totals equal
    image_counts (a test holds them together). LabelMapError where image_counts raises PanopticFormatError (e.g.
    a predicted id in the PNG without a segment entry): panopticapi has no matching for such a pair."""
    try:
        match = pq.match_image(gt.segment_map, list(gt.segments.values()), pred.segment_map,
                               list(pred.segments.values()))
    except pq.PanopticFormatError as e:
        raise LabelMapError(f"cannot match the prediction to the ground truth: {e}") from None
    gt_ids, pred_ids = match.gt_ids.tolist(), match.pred_ids.tolist()

    gt_status: dict[int, tuple] = {}
    pred_status: dict[int, tuple] = {}
    for row, col, iou in zip(match.matched_rows.tolist(), match.matched_cols.tolist(), match.matched_iou.tolist(),
                             strict=True):
        gt_status[gt_ids[row]] = ("TP", pred_ids[col], iou)
        pred_status[pred_ids[col]] = ("TP", gt_ids[row], iou)
    for row, segment_id in enumerate(gt_ids):
        if not match.gt_matched[row]:
            gt_status[segment_id] = ("crowd", None, None) if match.gt_crowd[row] else ("FN", None, None)

    # Ground-truth ids without a segment entry are not void to the matching, but the class map shows them as
    # void, so here they count as void.
    void = match.pred_on_void + match.pred_on_unlisted
    intersection, gt_category = match.intersection, match.gt_category
    fp_cover: dict[int, tuple] = {}
    for col, segment_id in enumerate(pred_ids):
        if match.pred_matched[col]:
            continue
        if not match.false_positive[col]:
            pred_status[segment_id] = ("ignored", None, None)
            continue
        pred_status[segment_id] = ("FP", None, None)
        by_class: dict[int, int] = {}
        for row in np.flatnonzero(intersection[:, col]).tolist():
            by_class[int(gt_category[row])] = by_class.get(int(gt_category[row]), 0) + int(intersection[row, col])
        best = max(by_class.items(), key=lambda item: (item[1], -item[0]), default=(None, 0))
        fp_cover[segment_id] = best if best[1] >= void[col] else (None, int(void[col]))
    # Typing the errors works on the match already made: microseconds, so it is not read from the folder.
    errors = {"gt": {}, "pred": {}}
    for record in segment_records(match, classify(match)):
        errors[record["side"]][record["id"]] = (record["type"], record["linked_id"])
    return SegmentMatch(gt_status, pred_status, fp_cover, errors["gt"], errors["pred"])


@lru_cache(maxsize=_CACHED_MAPS)
def _cached_match(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    return match_segments(gt, pred)


def cached_match(gt: LabelMap, pred: LabelMap) -> SegmentMatch:
    """match_segments, remembered for the maps the cache holds (the inspector asks once per click)."""
    return _cached_match(gt, pred)
