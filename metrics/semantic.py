"""Semantic segmentation metrics from exact pixel counts: per image and class the intersection and union
of predicted and ground-truth pixels, the (ground truth x prediction) confusion matrix, and the dataset numbers
mmsegmentation reports (mIoU, fwIoU, aAcc, mAcc) as sums of the per-image counts.

Rules (docs/metrics.md, "Semantic metrics"):
- ground-truth pixels equal to the ignore label (255) are left out of everything, predictions on them too;
- a prediction outside 0..C-1 (void of a panoptic class map, 255) is wrong for its ground-truth class and a
  prediction of no class: it adds to that class's union, to no class's predicted pixels;
- IoU_c = I_c / U_c; mIoU = mean over the classes with U_c > 0; fwIoU = sum_c gt_c / sum(gt) * IoU_c;
  aAcc = sum(I) / sum(gt); mAcc = mean over the classes with gt_c > 0 of I_c / gt_c.
- dataset numbers come from counts summed over images, never from averaging per-image scores; per-image mIoU
  (mean over that image's classes with U_c > 0) is for ranking images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metrics import pq

IGNORE = 255


def ade20k_labels(semantic_png: np.ndarray) -> np.ndarray:
    """ADE20K semantic PNG values (0 = unlabeled, v = class v - 1) -> class ids with 255 for unlabeled."""
    return (semantic_png.astype(np.int16) - 1).astype(np.uint8)  # 0 - 1 wraps to 255


def _check_ignore(num_classes: int, ignore: int) -> None:
    if 0 <= ignore < num_classes:
        raise ValueError(f"the ignore label {ignore} is a class id (0..{num_classes - 1})")


def _stray_values(gt: np.ndarray, num_classes: int, ignore: int) -> ValueError:
    gt = np.asarray(gt).astype(np.int64)
    values = np.unique(gt[((gt < 0) | (gt >= num_classes)) & (gt != ignore)])
    shown = f"{values[:8].tolist()}{' ...' if len(values) > 8 else ''}"
    return ValueError(f"ground-truth values {shown} are neither classes (0..{num_classes - 1}) nor the ignore "
                      f"label {ignore}")


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(C, C + 1) int64 pixel counts of (ground-truth class, predicted class) in one image; the last column counts
    predictions of no class. Ground-truth pixels equal to `ignore` are left out. ValueError for maps of different
    shapes and for ground-truth values that are neither a class nor `ignore`.

    The counting is hotcoco's SemanticEval over C + 1 classes, the extra one standing for "no class": it gives
    the same integers as a numpy bincount, 1.5-2x faster (bench/metrics.py), and hotcoco is already needed for
    mask AP.
    """
    from hotcoco.semantic import SemanticEval  # a 0.1 s import, paid only when counting

    if gt.shape != pred.shape:
        raise ValueError(f"ground truth is {gt.shape} but prediction is {pred.shape}")
    _check_ignore(num_classes, ignore)
    no_class = num_classes
    counted_ignore = ignore
    if not (gt.dtype == np.uint8 and no_class < ignore <= 255):  # hotcoco wants a non-negative ignore above the classes
        stray = (gt != ignore) & ((gt < 0) | (gt >= num_classes))
        if stray.any():
            raise _stray_values(gt, num_classes, ignore)
        counted_ignore = no_class + 1
        gt = np.where(gt == ignore, counted_ignore, gt).astype(np.int64)
    if pred.dtype == np.uint8:
        columns = np.minimum(pred, np.uint8(min(no_class, 255)))
    else:
        columns = np.where((pred >= 0) & (pred < num_classes), pred, no_class)
    evaluator = SemanticEval(num_classes + 1, ignore_index=counted_ignore)
    try:
        evaluator.update(gt, columns)
    except ValueError:
        raise _stray_values(gt, num_classes, counted_ignore) from None
    matrix = evaluator.confusion().astype(np.int64)
    if matrix[no_class].any():  # ground truth equal to the "no class" index
        raise _stray_values(gt, num_classes, counted_ignore)
    return matrix[:num_classes]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


@dataclass
class ClassCounts:
    """Per class (index = class id) pixel counts, int64: intersection, union, ground-truth pixels and predicted
    pixels (on non-ignored ground truth). Sums over images add up (`+`), and every metric comes from them."""

    intersection: np.ndarray
    union: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray

    @classmethod
    def from_confusion(cls, matrix: np.ndarray) -> ClassCounts:
        """From a (C, C + 1) confusion matrix as `confusion` returns it (or a sum of them)."""
        matrix = np.asarray(matrix, dtype=np.int64)
        num_classes = matrix.shape[0]
        intersection = np.diagonal(matrix).copy()
        gt_pixels = matrix.sum(axis=1)
        pred_pixels = matrix[:, :num_classes].sum(axis=0)
        return cls(intersection, gt_pixels + pred_pixels - intersection, gt_pixels, pred_pixels)

    @classmethod
    def zeros(cls, num_classes: int) -> ClassCounts:
        return cls(*(np.zeros(num_classes, dtype=np.int64) for _ in range(4)))

    @property
    def num_classes(self) -> int:
        return len(self.intersection)

    def __add__(self, other: ClassCounts) -> ClassCounts:
        return ClassCounts(self.intersection + other.intersection, self.union + other.union,
                           self.gt_pixels + other.gt_pixels, self.pred_pixels + other.pred_pixels)

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassCounts) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in ("intersection", "union", "gt_pixels",
                                                                           "pred_pixels"))

    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class in neither the ground truth nor the prediction (U = 0)."""
        return _ratio(self.intersection, self.union)

    def miou(self) -> float | None:
        """Mean IoU over the classes with U > 0; None when there is none."""
        active = self.union > 0
        return float(np.mean(self.intersection[active] / self.union[active])) if active.any() else None

    def records(self) -> list[dict]:
        """One dict per class with any pixel: {"category_id", "intersection", "union", "gt_pixels",
        "pred_pixels"}; what a per-image file stores (`from_records` reads it back)."""
        return [{"category_id": int(c), "intersection": int(self.intersection[c]), "union": int(self.union[c]),
                 "gt_pixels": int(self.gt_pixels[c]), "pred_pixels": int(self.pred_pixels[c])}
                for c in np.flatnonzero(self.union)]

    @classmethod
    def from_records(cls, records: Iterable[Mapping], num_classes: int) -> ClassCounts:
        counts = cls.zeros(num_classes)
        for r in records:
            c = int(r["category_id"])
            counts.intersection[c] += r["intersection"]
            counts.union[c] += r["union"]
            counts.gt_pixels[c] += r["gt_pixels"]
            counts.pred_pixels[c] += r["pred_pixels"]
        return counts


def image_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int = IGNORE) -> ClassCounts:
    """The per-class counts of one image (see `confusion` for the rules and errors)."""
    return ClassCounts.from_confusion(confusion(gt, pred, num_classes, ignore))


def sum_counts(counts: Iterable[ClassCounts], num_classes: int) -> ClassCounts:
    total = ClassCounts.zeros(num_classes)
    for c in counts:
        total = total + c
    return total


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def summary(counts: ClassCounts, class_ids: Sequence[int] | None = None) -> dict:
    """{"miou", "fwiou", "aacc", "macc", "n_classes", "per_class": {class id: {"iou", "acc", "intersection",
    "union", "gt_pixels", "pred_pixels"}}} from (summed) counts; a number without any pixel to stand on is None.
    `n_classes` counts the classes the mIoU averages (U > 0); per_class lists every class (or `class_ids`)."""
    iou, acc = counts.iou(), _ratio(counts.intersection, counts.gt_pixels)
    total_gt = int(counts.gt_pixels.sum())
    seen = counts.gt_pixels > 0
    result = {
        "miou": counts.miou(),
        "fwiou": float(np.sum(counts.gt_pixels[seen] / total_gt * iou[seen])) if total_gt else None,
        "aacc": float(counts.intersection.sum() / total_gt) if total_gt else None,
        "macc": float(np.mean(acc[seen])) if seen.any() else None,
        "n_classes": int((counts.union > 0).sum()),
    }
    ids = range(counts.num_classes) if class_ids is None else class_ids
    result["per_class"] = {int(c): {"iou": _none_if_nan(iou[c]), "acc": _none_if_nan(acc[c]),
                                    "intersection": int(counts.intersection[c]), "union": int(counts.union[c]),
                                    "gt_pixels": int(counts.gt_pixels[c]), "pred_pixels": int(counts.pred_pixels[c])}
                           for c in ids}
    return result


class ConfusionMatrix:
    """Pixel counts of (ground-truth class, predicted class) over every image given to `update`: the model-level
    record (`matrix`, C x (C + 1), last column = predictions of no class). Rules as in `confusion`."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE):
        _check_ignore(num_classes, ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> ClassCounts:
        """Adds one image; returns its per-class counts."""
        matrix = confusion(gt, pred, self.num_classes, self.ignore_index)
        self.matrix += matrix
        return ClassCounts.from_confusion(matrix)

    def counts(self) -> ClassCounts:
        return ClassCounts.from_confusion(self.matrix)

    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class in neither the ground truth nor the predictions."""
        return self.counts().iou()

    def miou(self) -> float | None:
        """Mean IoU over the classes present in the ground truth or the predictions; None when there are none."""
        return self.counts().miou()

    def pixel_accuracy(self) -> float | None:
        return summary(self.counts(), class_ids=())["aacc"]


def semantic_from_class_map(class_map: np.ndarray) -> np.ndarray:
    """(H, W) uint8 semantic map from a class map whose void is negative (eomt's PanopticResult.class_map): void
    becomes IGNORE, which scores as a prediction of no class. Class ids must be below 255."""
    class_map = np.asarray(class_map)
    if class_map.size and class_map.max() >= IGNORE:
        raise ValueError(f"class id {int(class_map.max())} does not fit a semantic map (0..{IGNORE - 1})")
    return np.where(class_map < 0, IGNORE, class_map).astype(np.uint8)


def semantic_from_panoptic(segment_map: np.ndarray, segments: Sequence[Mapping]) -> np.ndarray:
    """(H, W) uint8 semantic map from a panoptic segment map (0 = void) and its segments ({"id", "category_id"}):
    each segment's pixels take its category (crowd segments too, as Mask2Former's semantic COCO ground truth
    does); void and ids without a segment become IGNORE. Categories must be below 255."""
    ids = np.array([s["id"] for s in segments], dtype=np.int64)
    categories = np.array([s["category_id"] for s in segments], dtype=np.int64)
    if categories.size and (categories.min() < 0 or categories.max() >= IGNORE):
        raise ValueError(f"category ids must be in 0..{IGNORE - 1} for a semantic map")
    if len(np.unique(ids)) != len(ids) or (ids <= pq.VOID).any():
        raise ValueError("segment ids must be distinct and positive")
    lut = np.concatenate([[IGNORE], categories, [IGNORE]]).astype(np.uint8)
    index = pq.segment_indices(np.asarray(segment_map), ids, unknown=len(ids) + 1)
    return lut[index].reshape(np.shape(segment_map))
