"""COCO mask AP exactly as pycocotools' COCOeval(iouType="segm") computes it, per-image matches for ranking
images, and the conversions that let any prediction be scored as instances.

- `mask_ap(gt, results)`: AP, AP50, AP75, AP S/M/L, AR and AP per class. The evaluator is hotcoco's COCOeval, a
  Rust reimplementation that gives pycocotools' numbers (tests/test_instance_metrics.py compares the two on the
  same files) about 7x faster (bench/metrics.py). pycocotools' rules that change numbers stay: area ranges
  closed at both ends (area 1024 is small and medium), ground truth binned by its JSON `area`, a result that
  carries a `bbox` binned by the box's w x h (`results_from_instances` writes none), at most 100 detections per
  image and category, crowd regions ignored.
- `image_counts(gt, results, height, width)`: TP/FP/FN of one image per category at IoU 0.5 and 0.75 with
  COCOeval's matching, and the image's own AP per category at each (what COCOeval gives for the image alone;
  docs/metrics.md, "Mask AP").
- `results_from_instances`, `instances_from_panoptic`, `annotations_from_panoptic`: predictions and panoptic
  ground truth into COCO form.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

THRESHOLDS = (0.5, 0.75)
MAX_DETECTIONS = 100
_STATS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
          "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean (H, W) mask as compressed COCO RLE {"size": [h, w], "counts": str} (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def annotation_rle(segmentation, height: int, width: int) -> dict:
    """Compressed RLE of a COCO segmentation: polygons (merged), uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        return segmentation
    raise ValueError(f"not a COCO segmentation (polygons or RLE): {str(segmentation)[:80]}")


def results_from_instances(image_id: int, instances: Sequence[Mapping], category_ids: Sequence[int] | None = None,
                           top_k: int = MAX_DETECTIONS) -> list[dict]:
    """COCO results of one image's predicted instances ({"mask" (H, W) bool, "category_id" contiguous, "score"}):
    the top_k by score (stable), each {"image_id", "category_id", "segmentation" (RLE), "score"} with the
    category mapped through `category_ids` (contiguous id -> the file's id; None keeps it). No `bbox`, so
    pycocotools bins a result by its mask area. A mask shared by several instances is encoded once."""
    order = sorted(range(len(instances)), key=lambda k: -float(instances[k]["score"]))[:top_k]
    encoded: dict[int, dict] = {}
    results = []
    for k in order:
        instance = instances[k]
        mask = instance["mask"]
        if id(mask) not in encoded:
            encoded[id(mask)] = encode_mask(mask)
        category = int(instance["category_id"])
        results.append({"image_id": image_id,
                        "category_id": int(category_ids[category]) if category_ids is not None else category,
                        "segmentation": encoded[id(mask)], "score": float(instance["score"])})
    return results


def instances_from_panoptic(segment_map: np.ndarray, segments: Sequence[Mapping]) -> list[dict]:
    """The thing segments of a panoptic prediction as instances {"mask", "category_id", "score"} (score = the
    segment's score, 1.0 when it has none); stuff segments are left out. `segment_map` may use any void value."""
    return [{"mask": segment_map == s["id"], "category_id": int(s["category_id"]),
             "score": float(s.get("score", 1.0))} for s in segments if s["isthing"]]


def annotations_from_panoptic(segment_map: np.ndarray, segments: Sequence[Mapping], image_id: int,
                              first_id: int = 1) -> list[dict]:
    """Instance ground truth from a panoptic one (datasets without an instance file): one COCO annotation per
    thing segment, crowd kept, area = pixel count, ids from `first_id`."""
    annotations = []
    for s in segments:
        if not s["isthing"]:
            continue
        mask = segment_map == s["id"]
        rle = encode_mask(mask)
        annotations.append({"id": first_id + len(annotations), "image_id": image_id,
                            "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0)),
                            "area": float(mask.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                            "segmentation": rle})
    return annotations


def _check_results(gt: Mapping, results: Sequence[Mapping]) -> None:
    image_ids = {image["id"] for image in gt["images"]}
    category_ids = {category["id"] for category in gt["categories"]}
    for what, known, key in (("image", image_ids, "image_id"), ("category", category_ids, "category_id")):
        unknown = sorted({r[key] for r in results} - known)
        if unknown:
            raise ValueError(f"results name {what} ids {unknown[:8]} that the ground truth does not list"
                             + (" (contiguous class ids instead of the file's?)" if what == "category" else ""))


def _value(x: float) -> float | None:
    return None if x < 0 else float(x)  # pycocotools' -1: nothing to average


def _evaluated(gt: Mapping, results: Sequence[Mapping]):
    """hotcoco's COCOeval(iouType="segm") of `results` against `gt`, evaluated (not yet accumulated)."""
    import hotcoco  # imported here: only mask AP needs it

    _check_results(gt, results)
    coco_gt = hotcoco.COCO(dict(gt))
    evaluator = hotcoco.COCOeval(coco_gt, coco_gt.load_res(list(results)), "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    return evaluator


def mask_ap(gt: Mapping, results: Sequence[Mapping], per_class: bool = True, diagnostics: bool = False) -> dict:
    """COCO mask AP of `results` (a list of COCO results) against `gt` (a COCO instance document: images,
    annotations, categories). Returns {"ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10",
    "ar100", "ar_small", "ar_medium", "ar_large"} (None where pycocotools says -1: no ground truth in that range)
    and "per_class": {category id: AP or None}; with `diagnostics`, also "tide" and "calibration" (see
    `diagnose`). ValueError for results naming images or categories the ground truth does not list."""
    evaluator = _evaluated(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
        evaluator.summarize()
    summary = {name: _value(v) for name, v in zip(_STATS, evaluator.stats, strict=True)}
    if diagnostics:
        summary.update(diagnose(evaluator))
        if summary["ap50"] is None:  # no ground truth at all: hotcoco's mean over no category is 0, not an AP
            summary["tide"]["ap"] = None
    if per_class:
        # precision[T, R, K, A, M]: the class's AP over area "all" and 100 detections, as summarize averages it
        precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
        summary["per_class"] = {}
        for k, category_id in enumerate(evaluator.params.cat_ids):
            values = precision[:, :, k]
            values = values[values > -1]
            summary["per_class"][int(category_id)] = float(values.mean()) if values.size else None
    return summary


TIDE_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")  # tidecv's error types, in its order
TIDE_ORACLES = ("FP", "FN")  # every false positive / every missed object removed: bounds, not types
DIAGNOSTIC_IOU, BACKGROUND_IOU, CALIBRATION_BINS = 0.5, 0.1, 10


def diagnose(evaluator) -> dict:
    """What hotcoco derives from an evaluated COCOeval (tidecv's and the usual calibration definitions):
    "tide": {"iou", "background_iou", "ap" (AP at that IoU, mean over categories with ground truth), "delta_ap"
    {type: AP gained if every error of the type were fixed}, "counts" {type: errors}}, with the types TIDE_TYPES
    (classification, localisation, both, duplicate, background, missed) and the oracles TIDE_ORACLES in
    "delta_ap"; "calibration": {"iou", "ece", "mce", "detections", "bins": [[lower, upper, mean score, share
    correct, detections]]}, a detection correct when it is a TP at that IoU."""
    tide = evaluator.tide_errors(pos_thr=DIAGNOSTIC_IOU, bg_thr=BACKGROUND_IOU)
    calibration = evaluator.calibration(n_bins=CALIBRATION_BINS, iou_threshold=DIAGNOSTIC_IOU)
    return {"tide": {"iou": DIAGNOSTIC_IOU, "background_iou": BACKGROUND_IOU, "ap": float(tide["ap_base"]),
                     "delta_ap": {k: float(tide["delta_ap"][k]) for k in (*TIDE_TYPES, *TIDE_ORACLES)},
                     "counts": {k: int(tide["counts"][k]) for k in TIDE_TYPES}},
            "calibration": {"iou": DIAGNOSTIC_IOU, "ece": float(calibration["ece"]),
                            "mce": float(calibration["mce"]), "detections": int(calibration["num_detections"]),
                            "bins": [[b["bin_lower"], b["bin_upper"], b["avg_confidence"], b["avg_accuracy"],
                                      b["count"]] for b in calibration["bins"]]}}


COMPARE_RESAMPLES, COMPARE_SEED = 1000, 0
COMPARED_METRICS = (("ap", "AP"), ("ap50", "AP50"), ("ap75", "AP75"))  # our key, hotcoco's (and the label)


def compare_ap(gt: Mapping, results_a: Sequence[Mapping], results_b: Sequence[Mapping],
               resamples: int = COMPARE_RESAMPLES, seed: int = COMPARE_SEED) -> dict:
    """AP, AP50 and AP75 of A and B on the same ground truth and their differences A − B with paired bootstrap
    95% intervals over the images (hotcoco.compare: `resamples` draws of the images with replacement, `seed`):
    {metric: {"a", "b", "delta", "low", "high"}}."""
    import hotcoco

    a, b = _evaluated(gt, results_a), _evaluated(gt, results_b)
    with contextlib.redirect_stdout(io.StringIO()):
        compared = hotcoco.compare(b, a, n_bootstrap=resamples, seed=seed, confidence=0.95)  # its delta: 2nd − 1st
    return {name: {"a": compared["metrics_b"][key], "b": compared["metrics_a"][key],
                   "delta": compared["deltas"][key], "low": compared["ci"][key]["lower"],
                   "high": compared["ci"][key]["upper"]}
            for name, key in COMPARED_METRICS}


@dataclass
class MatchCounts:
    """TP/FP/FN of a category at one IoU threshold; `ap`: one image's own COCO AP of the category at that
    threshold (None without ground truth, where pycocotools has -1), which does not add up over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    ap: float | None = None

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs


def _average_precision(tp: np.ndarray, fp: np.ndarray, n_gt: int) -> float | None:
    """COCOeval.accumulate's AP of one category over detections in score order (tp, fp: bool per detection, an
    ignored one neither): precision made non-increasing, read at the 101 recall points (0 past the last recall
    reached), averaged."""
    if n_gt == 0:
        return None
    if not len(tp):
        return 0.0
    tp_sum, fp_sum = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    recall = tp_sum / n_gt
    precision = np.maximum.accumulate((tp_sum / (fp_sum + tp_sum + np.spacing(1)))[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    reached = at < len(precision)
    return float(np.where(reached, precision[np.minimum(at, len(precision) - 1)], 0.0).mean())


def _assign(ious: np.ndarray, crowd: np.ndarray, threshold: float) -> list[int]:
    """COCOeval.evaluateImg for one category at one threshold, area range "all": detections (rows, by score)
    take the unmatched non-crowd gt (columns, non-crowd first) of highest IoU >= threshold, else a crowd gt
    (the detection is then ignored). Per detection, the column it took, -1 for none."""
    n_dt, n_gt = ious.shape
    matched = np.zeros(n_gt, dtype=bool)
    taken = []
    for d in range(n_dt):
        best, m = min(threshold, 1 - 1e-10), -1
        for g in range(n_gt):
            if matched[g] and not crowd[g]:
                continue
            if m > -1 and not crowd[m] and crowd[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m > -1 and not crowd[m]:
            matched[m] = True
        taken.append(m)
    return taken


def _match(ious: np.ndarray, crowd: np.ndarray, threshold: float) -> MatchCounts:
    taken = np.asarray(_assign(ious, crowd, threshold), dtype=np.int64)
    is_tp = (taken > -1) & ~crowd[np.maximum(taken, 0)] if len(crowd) else np.zeros(len(taken), dtype=bool)
    is_fp = taken == -1
    n_gt = int((~crowd).sum())
    tp = int(is_tp.sum())
    return MatchCounts(tp, int(is_fp.sum()), n_gt - tp, _average_precision(is_tp, is_fp, n_gt))


def _by_category(gt: Sequence[Mapping], results: Sequence[Mapping], height: int, width: int, max_detections: int):
    """Per category: (gt indices, non-crowd first; their crowd flags; result indices, best score first, at most
    max_detections; the (results x gt) mask IoUs, crowd IoU = intersection / result area)."""
    gt_rles = [annotation_rle(a["segmentation"], height, width) for a in gt]
    for category in sorted({a["category_id"] for a in gt} | {r["category_id"] for r in results}):
        g = [k for k, a in enumerate(gt) if a["category_id"] == category]
        crowd = np.array([bool(gt[k].get("iscrowd", 0)) for k in g], dtype=bool)
        order = np.argsort(crowd, kind="stable")
        g, crowd = [g[k] for k in order], crowd[order]
        d = [k for k, r in enumerate(results) if r["category_id"] == category]
        d = [d[k] for k in np.argsort([-results[k]["score"] for k in d], kind="stable")][:max_detections]
        if d and g:
            ious = np.asarray(mask_utils.iou([annotation_rle(results[k]["segmentation"], height, width) for k in d],
                                             [gt_rles[k] for k in g], crowd.astype(np.uint8).tolist()))
        else:
            ious = np.zeros((len(d), len(g)))
        yield category, g, crowd, d, ious.reshape(len(d), len(g))


def image_counts(gt: Sequence[Mapping], results: Sequence[Mapping], height: int, width: int,
                 thresholds: Sequence[float] = THRESHOLDS,
                 max_detections: int = MAX_DETECTIONS) -> dict[float, dict[int, MatchCounts]]:
    """{threshold: {category id: MatchCounts}} of one image: `gt` its COCO annotations (polygons or RLE, with
    iscrowd), `results` its COCO results; category ids just have to agree between the two. The matching is
    COCOeval's (see `_assign`): per category the max_detections best-scored results, greedy by score; a result on
    a crowd region is neither TP nor FP; FN = unmatched non-crowd gt."""
    counts: dict[float, dict[int, MatchCounts]] = {t: {} for t in thresholds}
    for category, _, crowd, _, ious in _by_category(gt, results, height, width, max_detections):
        for t in thresholds:
            counts[t][int(category)] = _match(ious, crowd, t)
    return counts


def image_matches(gt: Sequence[Mapping], results: Sequence[Mapping], height: int, width: int, threshold: float,
                  max_detections: int = MAX_DETECTIONS) -> tuple[list[str], list[str]]:
    """The matching behind `image_counts` at one threshold, per object: for each result "TP", "FP", "ignored"
    (on a crowd region) or "unranked" (beyond the max_detections best of its category), and for each ground-truth
    annotation "TP", "FN" or "crowd". Their tallies per category are image_counts'."""
    result_status, gt_status = ["unranked"] * len(results), ["FN"] * len(gt)
    for _, g, crowd, d, ious in _by_category(gt, results, height, width, max_detections):
        for k, is_crowd in zip(g, crowd, strict=True):
            gt_status[k] = "crowd" if is_crowd else "FN"
        for k, m in zip(d, _assign(ious, crowd, threshold), strict=True):
            result_status[k] = "FP" if m == -1 else "ignored" if crowd[m] else "TP"
            if m > -1 and not crowd[m]:
                gt_status[g[m]] = "TP"
    return result_status, gt_status


def total_counts(per_category: Mapping[int, MatchCounts]) -> MatchCounts:
    """The counts of an image (or dataset) summed over categories."""
    total = MatchCounts()
    for c in per_category.values():
        total = total + c
    return total


def pycocotools_evaluation(gt_document: dict, results: list[dict]):
    """pycocotools' own COCOeval(iouType="segm") on the same input, evaluated and summarised (its printout
    swallowed): the reference `mask_ap` is checked and timed against."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = copy.deepcopy(gt_document)
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(copy.deepcopy(results)), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation
