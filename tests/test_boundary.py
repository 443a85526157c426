"""metrics.boundary against hand-computed boundaries (image border, void) and against boundary-iou-api's recipe
re-done with OpenCV (pad one zero pixel, erode d times with a 3x3 square; whole-image boundary maps with the
interior marker); and metrics.sizes on hand-made areas."""

from __future__ import annotations

import cv2  # requirements-dev: the reference implementation's erosion
import numpy as np
import pytest
from test_pq import random_case

from metrics import analysis, boundary, pq, sizes


def seg(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def reference_boundary(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """boundary-iou-api's mask_to_boundary: d from the diagonal, one zero pixel of padding, cv2.erode d times."""
    h, w = mask.shape
    d = max(1, int(round(ratio * np.sqrt(h**2 + w**2))))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), dtype=np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask.astype(np.uint8) - eroded) > 0


def reference_boundary_counts(gt_map, gt_segments, pred_map, pred_segments, largest_category_id):
    """The reference's panoptic evaluation with iou_type="boundary", written out for one image: boundary maps where
    each segment keeps its id on its boundary and its interior gets largest category id + 1, pair counts of both
    maps, matching on min(mask IoU, boundary IoU) > 0.5, PQ's FN / FP / crowd / void rules."""
    marker = largest_category_id + 1

    def boundary_map(segment_map, segments):
        result, areas = segment_map.copy(), {}
        for s in segments:
            mask = result == s["id"]
            edge = reference_boundary(mask)
            result[mask] = marker
            result[edge] = s["id"]
            areas[s["id"]] = int(edge.sum())
        return result, areas

    def pairs(a, b):
        keys, n = np.unique(a.astype(np.int64) * (1 << 32) + b.astype(np.int64), return_counts=True)
        return {(int(k) >> 32, int(k) & 0xFFFFFFFF): int(c) for k, c in zip(keys, n, strict=True)}

    gt_b, gt_b_area = boundary_map(gt_map, gt_segments)
    pred_b, pred_b_area = boundary_map(pred_map, pred_segments)
    mask_pairs, boundary_pairs = pairs(gt_map, pred_map), pairs(gt_b, pred_b)
    gt = {s["id"]: dict(s, area=int((gt_map == s["id"]).sum())) for s in gt_segments}
    pred = {s["id"]: dict(s, area=int((pred_map == s["id"]).sum())) for s in pred_segments}
    counts, gt_hit, pred_hit = {}, set(), set()
    for (g, p), inter in mask_pairs.items():
        if g not in gt or p not in pred or gt[g]["iscrowd"] or gt[g]["category_id"] != pred[p]["category_id"]:
            continue
        iou = inter / (pred[p]["area"] + gt[g]["area"] - inter - mask_pairs.get((0, p), 0))
        b_inter = boundary_pairs.get((g, p), 0)
        b_iou = b_inter / (pred_b_area[p] + gt_b_area[g] - b_inter - boundary_pairs.get((0, p), 0))
        if min(iou, b_iou) > 0.5:
            c = counts.setdefault(gt[g]["category_id"], pq.CategoryCounts())
            c.tp, c.iou_sum = c.tp + 1, c.iou_sum + min(iou, b_iou)
            gt_hit.add(g)
            pred_hit.add(p)
    crowd = {}
    for g, s in gt.items():
        if s["iscrowd"]:
            crowd[s["category_id"]] = g
        elif g not in gt_hit:
            counts.setdefault(s["category_id"], pq.CategoryCounts()).fn += 1
    for p, s in pred.items():
        ignored = mask_pairs.get((0, p), 0) + mask_pairs.get((crowd.get(s["category_id"], -1), p), 0)
        if p not in pred_hit and ignored / s["area"] <= 0.5:
            counts.setdefault(s["category_id"], pq.CategoryCounts()).fp += 1
    return counts


def relabel(rng, segment_map, segments):
    """The same segments under large random ids."""
    lookup = {0: 0} | {s["id"]: int(rng.integers(1000, 1 << 24)) for s in segments}
    return np.vectorize(lookup.get)(segment_map).astype(np.int32), [dict(s, id=lookup[s["id"]]) for s in segments]


def boundary_counts(gt_map, gt_segments, pred_map, pred_segments):
    return analysis.analyze_image(gt_map, gt_segments, pred_map, pred_segments).counts.boundary


def test_boundary_width_rounds_half_to_even():
    assert boundary.boundary_width(75, 100) == 2  # diagonal 125: 2.5 rounds to 2
    assert boundary.boundary_width(512, 683) == 17
    assert boundary.boundary_width(3, 4) == 1 and boundary.boundary_width(1, 1) == 1  # at least one pixel
    assert boundary.boundary_width(1500, 2000) == 50


def test_mask_boundary_by_hand_with_the_image_border_outside():
    # A full 5x6 mask: with d = 1 the outer ring is the boundary (the border counts as outside); with d = 2 all
    # but the 1x2 centre; with d = 3 everything.
    full = np.ones((5, 6), dtype=bool)
    ring = np.ones((5, 6), dtype=bool)
    ring[1:-1, 1:-1] = False
    assert (boundary.mask_boundary(full, 1) == ring).all()
    assert boundary.mask_boundary(full, 2).sum() == 30 - 2
    assert boundary.mask_boundary(full, 3).all()
    # A 40x50 rectangle in the corner of a 75x100 image, d = 2: 2000 - 36 x 46 pixels, wherever it lies.
    mask = np.zeros((75, 100), dtype=bool)
    mask[:40, :50] = True
    assert boundary.mask_boundary(mask, 2).sum() == 2000 - 36 * 46
    assert (boundary.mask_boundary(mask, 2) == reference_boundary(mask)).all()


def test_mask_boundary_equals_opencv_erosion():
    rng = np.random.default_rng(7)
    for height, width in ((75, 100), (40, 33), (1, 9), (9, 1), (120, 90)):
        for _ in range(4):
            coarse = rng.random((height // 4 + 1, width // 4 + 1)) < 0.6
            mask = np.kron(coarse, np.ones((4, 4), dtype=bool))[:height, :width] ^ (rng.random((height, width)) < 0.03)
            d = boundary.boundary_width(height, width)
            assert (boundary.mask_boundary(mask, d) == reference_boundary(mask)).all()
    for d in range(1, 12):  # every width of the doubling, on a crop-sized mask
        mask = rng.random((30, 37)) < 0.9
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), dtype=np.uint8), iterations=d)[1:-1, 1:-1].astype(bool)
        assert (boundary.mask_boundary(mask, d) == (mask & ~eroded)).all()


def test_boundary_pq_by_hand_on_a_75x100_image():
    # d = 2. Stuff 1: gt rows 0-39 x columns 0-49 (touching the top and left border), columns 50-51 of those rows
    # are void; the prediction covers the void columns too. Mask IoU 1 (void leaves the union), boundary IoU
    # 272 / (344 + 352 - 272 - 80) = 272 / 344: the 80 prediction boundary pixels on void leave the union.
    # Thing 3: gt rows 50-69 x columns 60-89, predicted 3 rows and 3 columns short at the top and left: mask IoU
    # 459 / 600 (a PQ match), boundary IoU 84 / 260 (no Boundary PQ match).
    gt = np.zeros((75, 100), dtype=np.int32)
    pred = np.zeros((75, 100), dtype=np.int32)
    gt[:40, :50] = 7
    pred[:40, :52] = 9
    gt[50:70, 60:90] = 4
    pred[53:70, 63:90] = 5
    gt_segments, pred_segments = [seg(7, 1), seg(4, 3)], [seg(9, 1), seg(5, 3)]
    result = analysis.analyze_image(gt, gt_segments, pred, pred_segments)
    assert result.match.matched_iou.tolist() == [459 / 600, 1.0]  # rows in ascending gt id: 4, then 7
    assert result.boundary_iou.tolist() == [84 / 260, 272 / 344]
    assert result.counts.boundary == {1: pq.CategoryCounts(tp=1, iou_sum=272 / 344),
                                      3: pq.CategoryCounts(fp=1, fn=1)}
    assert result.counts.boundary == reference_boundary_counts(gt, gt_segments, pred, pred_segments, 3)
    summary = pq.pq_summary(result.counts.boundary, {1: False, 3: True})
    assert summary["All"]["pq"] == pytest.approx(272 / 344 / 2) and summary["Things"]["pq"] == 0.0


def test_boundary_counts_match_the_reference_recipe_on_random_images_with_large_ids():
    rng = np.random.default_rng(8)
    kept = lost = 0
    for trial in range(40):
        height, width = ((32, 48), (72, 96), (40, 40))[trial % 3]  # d = 1, 2, 1
        case = random_case(rng, crowd=True, void=True, height=height, width=width, cell=4 + 4 * (trial % 2))
        # Large random ids, so the reference's interior marker (largest category id + 1 = 8) collides with none.
        gt_map, gt_segments = relabel(rng, *case[:2])
        pred_map, pred_segments = relabel(rng, *case[2:])
        ours = boundary_counts(gt_map, gt_segments, pred_map, pred_segments)
        reference = reference_boundary_counts(gt_map, gt_segments, pred_map, pred_segments, 7)
        assert ours.keys() == reference.keys()
        for k, c in ours.items():
            r = reference[k]
            assert (c.tp, c.fp, c.fn) == (r.tp, r.fp, r.fn)
            assert c.iou_sum == pytest.approx(r.iou_sum, abs=1e-12)
        # Small ids (boxes straight from the map) give the same counts as large ones (compact indices).
        assert boundary_counts(*case) == ours
        boundary_tp, mask_tp = sum(c.tp for c in ours.values()), sum(c.tp for c in pq.image_counts(*case).values())
        kept, lost = kept + boundary_tp, lost + mask_tp - boundary_tp
    assert kept > 5 and lost > 5  # both outcomes of the boundary test occur


def test_boundary_can_only_lower_pq_and_keeps_its_ignore_rules():
    rng = np.random.default_rng(9)
    for _ in range(30):
        case = random_case(rng, crowd=True, void=True, height=40, width=40, cell=4)
        counts = pq.image_counts(*case)
        result = analysis.analyze_image(*case)
        assert (result.boundary_iou <= 1).all() and (result.boundary_iou >= 0).all()
        for k, b in result.counts.boundary.items():
            c = counts[k]
            assert b.tp <= c.tp and b.iou_sum <= c.iou_sum + 1e-12
            assert b.tp + b.fn == c.tp + c.fn  # the same non-crowd gt segments
            assert c.fp <= b.fp <= c.fp + (c.tp - b.tp)


def test_size_bins_by_hand():
    assert sizes.size_bin([0, 1023, 1024, 9215, 9216, 10**6]).tolist() == [0, 0, 1, 1, 2, 2]
    # gt 1: 31 x 33 = 1023 px, matched (small TP); gt 2: 32 x 32 = 1024 px, missed (medium FN); prediction 10 of
    # 96 x 96 = 9216 px on gt 3 of another class (large FP), gt 3 (100 x 200 = 20000 px, large FN).
    gt = np.zeros((300, 300), dtype=np.int32)
    pred = np.zeros((300, 300), dtype=np.int32)
    gt[:31, :33], pred[:31, :33] = 1, 11
    gt[40:72, 40:72] = 2
    gt[100:200, 50:250] = 3
    pred[100:196, 50:146] = 10
    result = analysis.analyze_image(gt, [seg(1, 5), seg(2, 5), seg(3, 6)], pred, [seg(11, 5), seg(10, 7)])
    assert result.counts.sizes == {"small": {5: pq.CategoryCounts(tp=1, iou_sum=1.0)},
                                   "medium": {5: pq.CategoryCounts(fn=1)},
                                   "large": {6: pq.CategoryCounts(fn=1), 7: pq.CategoryCounts(fp=1)}}
    summary = sizes.size_summary(result.counts.sizes, {5: True, 6: False, 7: True})
    assert summary["small"]["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert summary["medium"]["per_class"][5]["pq"] == 0.0 and summary["large"]["All"]["n"] == 2
    things = sizes.size_summary(result.counts.sizes, {5: True, 6: False, 7: True}, things_only=True)
    assert things["large"]["All"]["n"] == 1 and 6 not in things["large"]["per_class"]


def test_size_bins_add_up_to_pq_counts():
    rng = np.random.default_rng(10)
    for _ in range(20):
        case = random_case(rng, crowd=True, void=True, height=96, width=128, cell=16)
        counts = pq.image_counts(*case)
        binned = analysis.analyze_image(*case).counts.sizes
        total = pq.sum_counts(binned.values())
        assert {k: (c.tp, c.fp, c.fn) for k, c in total.items()} == \
            {k: (c.tp, c.fp, c.fn) for k, c in counts.items() if c.tp + c.fp + c.fn}
        for k, c in total.items():
            assert c.iou_sum == pytest.approx(counts[k].iou_sum, abs=1e-12)
