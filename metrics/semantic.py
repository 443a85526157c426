"""Semantic segmentation mIoU from a confusion matrix accumulated over images (ignore label 255)."""

from __future__ import annotations

import numpy as np

IGNORE = 255


def ade20k_labels(semantic_png: np.ndarray) -> np.ndarray:
    """ADE20K semantic PNG values (0 = unlabeled, v = class v - 1) -> class ids with 255 for unlabeled."""
    return (semantic_png.astype(np.int16) - 1).astype(np.uint8)  # 0 - 1 wraps to 255


class ConfusionMatrix:
    """Pixel counts of (ground-truth class, predicted class) over every image given to `update`.

    Ground-truth pixels equal to `ignore_index` are left out. A prediction outside 0..num_classes-1 (for example
    EoMT's "no class" or 255) is wrong for the ground-truth class but a false positive for none.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # The extra last column collects predictions that are no class.
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth is {gt.shape} but prediction is {pred.shape}")
        gt, pred = gt.ravel().astype(np.int64), pred.ravel().astype(np.int64)
        keep = gt != self.ignore_index
        gt, pred = gt[keep], pred[keep]
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_classes):
            raise ValueError(f"ground-truth class ids must be in 0..{self.num_classes - 1} or {self.ignore_index}")
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        n = self.num_classes + 1
        self.matrix += np.bincount(gt * n + pred, minlength=self.num_classes * n).reshape(self.num_classes, n)

    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class in neither the ground truth nor the predictions."""
        true_positive = np.diag(self.matrix[:, :-1]).astype(np.float64)
        union = self.matrix.sum(axis=1) + self.matrix[:, :-1].sum(axis=0) - true_positive
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    def miou(self) -> float | None:
        """Mean IoU over the classes present in the ground truth or the predictions; None when there are none."""
        iou = self.iou()
        return float(np.nanmean(iou)) if not np.isnan(iou).all() else None

    def pixel_accuracy(self) -> float | None:
        total = self.matrix.sum()
        return float(np.trace(self.matrix[:, :-1]) / total) if total else None
