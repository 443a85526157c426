"""metrics.semantic against a hand-computed case, torchmetrics' MulticlassJaccardIndex / MulticlassAccuracy and
hotcoco's SemanticEval (mmsegmentation's protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hotcoco.semantic import SemanticEval
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from metrics import semantic
from metrics.semantic import ClassCounts, ConfusionMatrix, image_counts, summary


def hand_case():
    """3 classes; 255 ignored; 9 and -1 are predictions of no class."""
    gt = np.array([[0, 0, 0, 1, 1, 255],
                   [2, 2, 1, 1, 255, 255]])
    pred = np.array([[0, 0, 1, 1, 9, 0],
                     [2, 0, 1, 1, 2, 1]])
    return gt, pred


def test_hand_computed_counts_and_summary():
    gt, pred = hand_case()
    counts = image_counts(gt.astype(np.uint8), pred.astype(np.uint8), 3)
    # class 0: gt 3 px, predicted on 2 of them + 1 gt-2 pixel -> I 2, pred 3, U 4
    # class 1: gt 4 px, predicted on 3 of them + 1 gt-0 pixel -> I 3, pred 4, U 5 (the 9 is a miss of class 1)
    # class 2: gt 2 px, predicted on 1 -> I 1, pred 1, U 2 (the 2 under 255 is ignored)
    assert counts.intersection.tolist() == [2, 3, 1] and counts.union.tolist() == [4, 5, 2]
    assert counts.gt_pixels.tolist() == [3, 4, 2] and counts.pred_pixels.tolist() == [3, 4, 1]
    result = summary(counts)
    assert result["miou"] == pytest.approx((2 / 4 + 3 / 5 + 1 / 2) / 3)
    assert result["fwiou"] == pytest.approx(3 / 9 * 2 / 4 + 4 / 9 * 3 / 5 + 2 / 9 * 1 / 2)
    assert result["aacc"] == pytest.approx(6 / 9) and result["macc"] == pytest.approx((2 / 3 + 3 / 4 + 1 / 2) / 3)
    assert result["n_classes"] == 3
    assert result["per_class"][1] == {"iou": pytest.approx(0.6), "acc": 0.75, "intersection": 3, "union": 5,
                                      "gt_pixels": 4, "pred_pixels": 4}
    # The same through the general path (int64 maps, -1 for no class) and through the matrix.
    assert image_counts(gt, np.where(pred == 9, -1, pred), 3) == counts
    assert image_counts(np.where(gt == 255, -1, gt), pred, 3, ignore=-1) == counts
    matrix = semantic.confusion(gt.astype(np.uint8), pred.astype(np.uint8), 3)
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 3, 0, 1], [1, 0, 1, 0]]


def test_absent_classes_and_empty_images():
    counts = image_counts(np.array([[0, 0]], np.uint8), np.array([[0, 2]], np.uint8), 4)
    result = summary(counts)
    # class 1 and 3 appear nowhere: no IoU, left out of the mean; class 2 only predicted: IoU 0, in the mean
    assert [result["per_class"][c]["iou"] for c in range(4)] == [0.5, None, 0.0, None]
    assert result["miou"] == 0.25 and result["n_classes"] == 2 and result["macc"] == 0.5
    assert counts.miou() == 0.25
    nothing = summary(image_counts(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8), 4))
    assert nothing["miou"] is None and nothing["aacc"] is None and nothing["fwiou"] is None
    assert nothing["macc"] is None and nothing["n_classes"] == 0


def random_maps(rng, num_classes, shape, ignore_fraction=0.1, absent=()):
    gt = rng.integers(0, num_classes, size=shape)
    for c in absent:
        gt[gt == c] = (c + 1) % num_classes
    gt[rng.random(shape) < ignore_fraction] = 255
    pred = np.where(rng.random(shape) < 0.6, gt, rng.integers(0, num_classes, size=shape))
    pred = np.where(pred == 255, 0, pred)
    for c in absent:
        pred[pred == c] = (c + 2) % num_classes
    return gt.astype(np.uint8), pred.astype(np.uint8)


def test_matches_torchmetrics_and_hotcoco_over_images():
    rng = np.random.default_rng(0)
    num_classes = 19
    pairs = [random_maps(rng, num_classes, (37, 53)) for _ in range(4)]
    matrix = ConfusionMatrix(num_classes)
    per_image = [matrix.update(gt, pred) for gt, pred in pairs]
    jaccard = MulticlassJaccardIndex(num_classes, average=None, ignore_index=255)
    micro = MulticlassAccuracy(num_classes, average="micro", ignore_index=255)
    macro = MulticlassAccuracy(num_classes, average="macro", ignore_index=255)
    hotcoco = SemanticEval(num_classes)
    for gt, pred in pairs:
        for metric in (jaccard, micro, macro):
            metric.update(torch.from_numpy(pred.astype(np.int64)).flatten(), torch.from_numpy(gt.astype(np.int64)).flatten())
        hotcoco.update(gt, pred)
    counts = matrix.counts()
    result = summary(counts)
    assert counts == semantic.sum_counts(per_image, num_classes)  # dataset numbers are sums of image records
    assert np.allclose(counts.iou(), jaccard.compute().double().numpy(), rtol=0, atol=1e-6)  # float32 there
    assert result["miou"] == pytest.approx(float(jaccard.compute().double().mean()), abs=1e-6)
    assert result["aacc"] == pytest.approx(float(micro.compute()), abs=1e-6)
    assert result["macc"] == pytest.approx(float(macro.compute()), abs=1e-6)
    reference = hotcoco.results()
    for ours, theirs in (("miou", "mIoU"), ("fwiou", "fwIoU"), ("aacc", "aAcc"), ("macc", "mAcc")):
        assert result[ours] == pytest.approx(reference[theirs], rel=1e-12)
    assert (hotcoco.confusion() == matrix.matrix[:, :num_classes]).all()


def test_classes_absent_everywhere_are_left_out_of_the_mean():
    rng = np.random.default_rng(1)
    gt, pred = random_maps(rng, 6, (40, 40), absent=(4,))
    jaccard = MulticlassJaccardIndex(6, average=None, ignore_index=255)
    per_class = jaccard(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64))).double().numpy()
    counts = image_counts(gt, pred, 6)
    present = counts.union > 0
    assert present.tolist() == [True] * 4 + [False, True]
    assert counts.miou() == pytest.approx(per_class[present].mean(), abs=1e-6)  # torchmetrics scores class 4 as 0
    hotcoco = SemanticEval(6)
    hotcoco.update(gt, pred)
    assert summary(counts)["miou"] == pytest.approx(hotcoco.results()["mIoU"], rel=1e-12)


def test_records_round_trip_and_add_up():
    rng = np.random.default_rng(2)
    counts = [image_counts(*random_maps(rng, 7, (9, 11)), 7) for _ in range(3)]
    restored = [ClassCounts.from_records(c.records(), 7) for c in counts]
    assert restored == counts
    total = ClassCounts.from_records([r for c in counts for r in c.records()], 7)
    assert total == counts[0] + counts[1] + counts[2]
    assert all(set(r) == {"category_id", "intersection", "union", "gt_pixels", "pred_pixels"}
               for r in counts[0].records())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"ground truth is \(2, 2\) but prediction is \(2, 3\)"):
        image_counts(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 3)
    for dtype in (np.uint8, np.int32):
        with pytest.raises(ValueError, match=r"ground-truth values \[3, 7\] are neither classes \(0..2\) nor the "
                                             "ignore label 255"):
            image_counts(np.array([[3, 7, 255]], dtype), np.zeros((1, 3), np.uint8), 3)
    with pytest.raises(ValueError, match="the ignore label 1 is a class id"):
        ConfusionMatrix(3, ignore_index=1)


def test_panoptic_and_class_maps_become_semantic_maps():
    segment_map = np.array([[0, 5, 5], [70000, 70000, 9]])
    segments = [{"id": 5, "category_id": 3}, {"id": 70000, "category_id": 0, "iscrowd": 1}]
    assert semantic.semantic_from_panoptic(segment_map, segments).tolist() == [[255, 3, 3], [0, 0, 255]]
    class_map = np.array([[-1, 2], [132, 0]])
    assert semantic.semantic_from_class_map(class_map).tolist() == [[255, 2], [132, 0]]
    assert semantic.semantic_from_class_map(class_map).dtype == np.uint8
    with pytest.raises(ValueError, match="class id 300 does not fit"):
        semantic.semantic_from_class_map(np.array([300]))
    with pytest.raises(ValueError, match="category ids must be in 0..254"):
        semantic.semantic_from_panoptic(segment_map, [{"id": 5, "category_id": 255}])
