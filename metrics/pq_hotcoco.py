"""Dataset-level PQ counts from COCO panoptic files, computed by hotcoco (Rust, MIT) when it is installed.

hotcoco's `PanopticEval` ports panopticapi's `pq_compute`: the same matching rules, ground-truth areas from the
JSON, per-image IoUs added in ascending (gt id, pred id) order and per-image counts added in annotation order, so
its per-category tp / fp / fn / IoU sums are bit for bit those of `metrics.pq.image_counts` summed with
`metrics.pq.sum_counts` (tests/test_pq_hotcoco.py holds them together). It decodes the PNGs and counts in native
threads, several times faster than numpy can. It has no per-image output and no per-segment matches: those stay
metrics.pq's.

It is only handed input that both score the same way. Where it and metrics.pq differ, namely segment lists that
metrics.pq rejects (repeated or non-positive ids, a ground-truth segment without "area") or reads differently
(iscrowd other than 0 / 1, non-integer ids), `dataset_counts` declines and the caller counts with metrics.pq. It
also declines whenever hotcoco raises: metrics.pq then reports the problem with its own message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from metrics import pq

try:
    from hotcoco import panoptic as _panoptic
except ImportError:  # optional: metrics.pq does everything, only slower
    _panoptic = None


def available() -> bool:
    """Whether hotcoco is installed."""
    return _panoptic is not None


def _is_id(value) -> bool:
    return type(value) is int and value >= 0


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _plain_segments(segments, ground_truth: bool, categories: Mapping[int, bool]) -> bool:
    # Written out rather than with helpers: this runs over every segment of the dataset before hotcoco starts.
    if type(segments) is not list:
        return False
    ids = set()
    for s in segments:
        if type(s) is not dict:
            return False
        segment_id, category_id = s.get("id"), s.get("category_id")
        if type(segment_id) is not int or segment_id <= pq.VOID or type(category_id) is not int \
                or category_id not in categories:
            return False
        if ground_truth:
            area, crowd = s.get("area"), s.get("iscrowd", 0)
            if type(area) is not int or area < 0 or not (type(crowd) is bool or (type(crowd) is int and 0 <= crowd <= 1)):
                return False
        ids.add(segment_id)
    return len(ids) == len(segments)


def plain_input(pairs: Sequence[tuple[dict, dict]], categories: Mapping[int, bool]) -> bool:
    """True when every (gt, pred) annotation pair is input that hotcoco and metrics.pq read the same way:
    integer image ids, file names without folders, distinct positive integer segment ids of known categories, and
    ground-truth segments with an integer "area" and iscrowd 0 or 1."""
    if not all(_is_id(k) for k in categories):
        return False
    return all(_is_id(gt["image_id"]) and _plain_name(gt["file_name"]) and _plain_name(pred["file_name"])
               and _plain_segments(gt["segments_info"], True, categories)
               and _plain_segments(pred["segments_info"], False, categories)
               and (len(gt["segments_info"]) + 2) * (len(pred["segments_info"]) + 2) <= pq.MAX_CELLS
               for gt, pred in pairs)


def dataset_counts(gt_json_path: str | Path, pred_json_path: str | Path, pairs: Sequence[tuple[dict, dict]],
                   categories: Mapping[int, bool], gt_folder: str | Path,
                   pred_folder: str | Path) -> dict[int, pq.CategoryCounts] | None:
    """Per-category tp, fp, fn and iou_sum over the two COCO panoptic JSON files and their PNG folders; only active
    categories, gt_segments / pred_segments left at 0. `pairs` (each ground-truth annotation with its prediction)
    and `categories` (id -> isthing) are the files' content as metrics.coco_panoptic reads it, for the checks.

    None when hotcoco is not installed, when the input is not `plain_input`, or when hotcoco raises (a bad PNG, a
    segment missing from one side, a file it parses differently, ...): then metrics.pq gives the answer or the
    error. hotcoco reads the files itself: its parser is faster than handing it Python objects."""
    if _panoptic is None or not plain_input(pairs, categories):
        return None
    try:
        evaluation = _panoptic.PanopticEval(str(gt_json_path), str(pred_json_path), gt_folder=str(gt_folder),
                                            pred_folder=str(pred_folder))
        evaluation.evaluate()
        per_class = evaluation.results()["per_class"]
    except Exception:  # noqa: BLE001 -- any failure: metrics.pq recounts and raises its own message
        return None
    if set(per_class) != set(categories):  # cannot happen when both parsers read the same file; never guess
        return None
    return {category_id: pq.CategoryCounts(tp=c["tp"], fp=c["fp"], fn=c["fn"], iou_sum=c["iou"])
            for category_id, c in per_class.items() if c["tp"] + c["fp"] + c["fn"] > 0}
