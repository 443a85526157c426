"""metrics.errors: every error type on hand-built label maps with hand-computed ΔPQs, the rules' edge cases, and
the checks that must hold on any input (type counts add up to FN and FP; fixing everything gives PQ 1)."""

from __future__ import annotations

import numpy as np
import pytest
from test_pq import load_bench, random_case

from metrics import analysis, errors, pq


def seg(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def strip(*zones):
    """One-row maps from zones of (gt ids, pred ids), joined by a void pixel in both."""
    gt, pred = [], []
    for gt_zone, pred_zone in zones:
        assert len(gt_zone) == len(pred_zone)
        gt += [*gt_zone, 0]
        pred += [*pred_zone, 0]
    return np.array([gt], dtype=np.int32), np.array([pred], dtype=np.int32)


def analyze(gt, gt_segments, pred, pred_segments):
    return analysis.analyze_image(np.asarray(gt, dtype=np.int32), gt_segments, np.asarray(pred, dtype=np.int32),
                                  pred_segments)


def record(side, segment_id, category_id, kind, linked_id):
    return {"side": side, "id": segment_id, "category_id": category_id, "type": kind, "linked_id": linked_id}


# One image, one zone per error type, a category (or two) per zone; 1, 2 and 9 are stuff.
ZONES = strip(
    ([1, 1, 1, 1], [10, 10, 10, 0]),  # class: stuff 1 predicted as stuff 2 with IoU 3 / 4
    ([2, 2, 2, 2, 2, 2, 3, 3], [11] * 8),  # merged: 11 matches 2 (IoU 6 / 8) and swallows all of 3
    ([4, 4, 4, 4, 5, 5, 5, 5], [0, 0, 12, 12, 12, 12, 0, 0]),  # merged: 12 covers half of 4 and half of 5
    ([6] * 10, [13] * 4 + [14] * 4 + [0, 0]),  # split: 6 in two pieces of 4 (IoU 0.4 each)
    ([7] * 10, [15] * 4 + [0] * 6),  # localization: IoU 0.4
    ([8] * 4 + [9] * 8, [0] * 4 + [16] * 3 + [17] * 5),  # 8 missed; 16 (IoU 3 / 8 with 9) background; 17 matches 9
)
ZONE_GT = [seg(1, 1), seg(2, 3), seg(3, 3), seg(4, 4), seg(5, 4), seg(6, 5), seg(7, 6), seg(8, 7), seg(9, 9)]
ZONE_PRED = [seg(10, 2), seg(11, 3), seg(12, 4), seg(13, 5), seg(14, 5), seg(15, 6), seg(16, 8), seg(17, 9)]
ZONE_CATEGORIES = {1: False, 2: False, 3: True, 4: True, 5: True, 6: True, 7: True, 8: True, 9: False}


def test_every_error_type_on_hand_built_maps():
    result = analyze(*ZONES[:1], ZONE_GT, ZONES[1], ZONE_PRED)
    assert result.segments() == [
        record("gt", 1, 1, "class", 10), record("gt", 3, 3, "merged", 11), record("gt", 4, 4, "merged", 12),
        record("gt", 5, 4, "merged", 12), record("gt", 6, 5, "split", 13), record("gt", 7, 6, "localization", 15),
        record("gt", 8, 7, "missed", 0),
        record("pred", 10, 2, "class", 1), record("pred", 12, 4, "merged", 4), record("pred", 13, 5, "split", 6),
        record("pred", 14, 5, "split", 6), record("pred", 15, 6, "localization", 7),
        record("pred", 16, 8, "background", 0)]
    assert result.errors.gt_link_iou[0] == 0.75  # what the fixed class error scores
    assert result.counts.errors[1] == errors.ErrorCounts(fn_class=1, class_iou_sum=0.75)
    assert result.counts.errors[2] == errors.ErrorCounts(fp_class=1)
    assert result.counts.errors[4] == errors.ErrorCounts(fn_merged=2, fp_merged=1)
    assert result.counts.errors[5] == errors.ErrorCounts(fn_split=1, fp_split=2)
    assert set(result.counts.errors) == {1, 2, 3, 4, 5, 6, 7, 8}


def test_delta_pq_of_each_fix_by_hand():
    gt, pred = ZONES
    counts = pq.image_counts(gt, ZONE_GT, pred, ZONE_PRED)
    table = errors.error_table(counts, analyze(gt, ZONE_GT, pred, ZONE_PRED).counts.errors, ZONE_CATEGORIES)
    # PQ per category: 3 -> 0.75 / 1.5 = 0.5, 9 -> 0.625, the seven others 0: All = 1.125 / 9.
    assert table["All"]["pq"] == pytest.approx(0.125) and table["All"]["n"] == 9
    assert table["All"]["fn"] == {"class": 1, "merged": 3, "split": 1, "localization": 1, "missed": 1}
    assert table["All"]["fp"] == {"class": 1, "merged": 1, "split": 2, "localization": 1, "background": 1}
    expected = {
        "class": (0.75 + 0.5 + 0.625) / 8 - 0.125,  # 1 becomes a TP with IoU 0.75, 2 has nothing left
        "merged": (0.75 + 0.625) / 8 - 0.125,  # 3: 0.75 / 1; 4 has nothing left
        "split": 1.125 / 8 - 0.125, "localization": 1.125 / 8 - 0.125,  # 5, resp. 6, has nothing left
        "missed": 1.125 / 8 - 0.125, "background": 1.125 / 8 - 0.125,
        "sq": (1 / 1.5 + 1.0) / 9 - 0.125}  # every TP's IoU set to 1
    assert table["All"]["delta_pq"] == pytest.approx(expected, abs=1e-15)
    assert table["Stuff"]["delta_pq"]["class"] == pytest.approx((0.75 + 0.625) / 2 - 0.625 / 3)
    assert table["Things"]["delta_pq"]["missed"] == pytest.approx(0.5 / 5 - 0.5 / 6)
    assert table["per_class"][3]["delta_pq"]["merged"] == pytest.approx(0.25)
    assert table["per_class"][4]["delta_pq"]["merged"] is None  # no counts left: PQ undefined
    assert table["per_class"][1]["delta_pq"]["class"] == 0.75 and table["per_class"][1]["delta_pq"]["split"] == 0
    assert table["per_class"][5]["fp"] == {"class": 0, "merged": 0, "split": 2, "localization": 0, "background": 0}
    # The ΔPQs are not additive: their sum is not what fixing everything gives.
    summed = sum(v for k, v in table["All"]["delta_pq"].items() if k != "sq")
    all_fixed = pq.pq_summary({k: errors.fixed(c, table_errors(gt, pred).get(k), "all") for k, c in counts.items()},
                              ZONE_CATEGORIES)["All"]["pq"]
    assert all_fixed - 0.125 != pytest.approx(summed)


def table_errors(gt, pred):
    return analyze(gt, ZONE_GT, pred, ZONE_PRED).counts.errors


def test_fixing_everything_with_perfect_iou_gives_pq_one():
    gt, pred = ZONES
    counts = pq.image_counts(gt, ZONE_GT, pred, ZONE_PRED)
    fixed = {k: errors.fixed(c, table_errors(gt, pred).get(k), "all", perfect_iou=True) for k, c in counts.items()}
    summary = pq.pq_summary(fixed, ZONE_CATEGORIES)
    assert summary["All"]["pq"] == 1.0
    assert {k: v["pq"] for k, v in summary["per_class"].items()} == {1: 1.0, 3: 1.0, 9: 1.0}


def test_duplicate_on_a_matched_object_is_split_and_threshold_edges():
    # gt 1 (8 px) matched by 10 (6 px, IoU 0.75); 11 lies on it (a duplicate piece): split, linked to 1.
    result = analyze([[1] * 8], [seg(1, 5)], [[10] * 6 + [11] * 2], [seg(10, 5), seg(11, 5)])
    assert result.segments() == [record("pred", 11, 5, "split", 1)]
    # Exactly 10% is a piece: 10 covers 4 of 10 pixels, 11 covers 1 (10%), together 5 (half): split.
    result = analyze([[1] * 10], [seg(1, 5)], [[10] * 4 + [11] + [0] * 5], [seg(10, 5), seg(11, 5)])
    assert result.segments()[0] == record("gt", 1, 5, "split", 10)
    # Without the 10% piece: no split, best IoU 0.4 -> localization. IoU exactly 0.5 is no match but
    # localization; exactly 0.1 is not.
    result = analyze([[1] * 10], [seg(1, 5)], [[10] * 4 + [0] * 6], [seg(10, 5)])
    assert result.segments()[0]["type"] == "localization"
    result = analyze([[1] * 4], [seg(1, 5)], [[10] * 2 + [0] * 2], [seg(10, 5)])
    assert [r["type"] for r in result.segments()] == ["localization", "localization"]
    result = analyze([[1] * 10], [seg(1, 5)], [[10] + [0] * 9], [seg(10, 5)])
    assert [r["type"] for r in result.segments()] == ["missed", "background"]


def test_only_counted_predictions_and_non_crowd_ground_truth_take_part():
    # 10 (category 6) has IoU 1 with gt 1 but lies 6 / 10 on void: not counted, so gt 1 is missed, not class.
    result = analyze([[1] * 4 + [0] * 6], [seg(1, 5)], [[10] * 10], [seg(10, 6)])
    assert result.segments() == [record("gt", 1, 5, "missed", 0)]
    # A crowd region of another category under a prediction does not make it a class error.
    result = analyze([[1] * 4 + [2] * 4], [seg(1, 5), seg(2, 6, iscrowd=1)], [[0] * 4 + [10] * 4], [seg(10, 5)])
    assert result.segments() == [record("gt", 1, 5, "missed", 0), record("pred", 10, 5, "background", 0)]
    # Class IoU must be over 0.5: 2 of 4 is not.
    result = analyze([[1] * 4], [seg(1, 5)], [[10] * 2 + [0] * 2], [seg(10, 6)])
    assert [r["type"] for r in result.segments()] == ["missed", "background"]


def test_stuff_class_confusion_and_localization():
    # wall (stuff 0) predicted as floor (stuff 3) on 9 of 10 pixels, sky (stuff 2) half right.
    gt = [[1] * 10 + [2] * 10]
    pred = [[10] * 9 + [0] + [11] * 4 + [0] * 6]
    result = analyze(gt, [seg(1, 0), seg(2, 2)], pred, [seg(10, 3), seg(11, 2)])
    assert result.segments() == [record("gt", 1, 0, "class", 10), record("gt", 2, 2, "localization", 11),
                                 record("pred", 10, 3, "class", 1), record("pred", 11, 2, "localization", 2)]
    counts = pq.image_counts(np.array(gt), [seg(1, 0), seg(2, 2)], np.array(pred), [seg(10, 3), seg(11, 2)])
    table = errors.error_table(counts, result.counts.errors, {0: False, 2: False, 3: False})
    assert table["Stuff"]["delta_pq"]["class"] == pytest.approx(0.9 / 2 - 0.0)
    assert table["Stuff"]["delta_pq"]["localization"] == pytest.approx(0.0)  # sky has nothing left, wall stays 0


def test_no_segments_and_empty_sides():
    assert analyze([[0, 0]], [], [[0, 0]], []).segments() == []
    assert analyze([[1, 1]], [seg(1, 5)], [[0, 0]], []).segments() == [record("gt", 1, 5, "missed", 0)]
    # Half on void still counts, and void leaves the union: IoU 1 with another class.
    assert analyze([[0, 1]], [seg(1, 5)], [[2, 2]], [seg(2, 7)]).segments() == [
        record("gt", 1, 5, "class", 2), record("pred", 2, 7, "class", 1)]
    with pytest.raises(ValueError, match="unknown error type 'typo'"):
        errors.fixed(pq.CategoryCounts(), None, "typo")


def test_type_counts_add_up_and_everything_fixed_is_perfect_on_random_images():
    rng = np.random.default_rng(5)
    categories = {c: c < 100 for c in range(150)}
    seen = set()
    cases = [random_case(rng, crowd=True, void=True) for _ in range(60)]
    cases += [load_bench().synthetic_pair(rng) for _ in range(6)]  # ADE20K-sized, with merged cells
    for gt_map, gt_segments, pred_map, pred_segments in cases:
        counts = pq.image_counts(gt_map, gt_segments, pred_map, pred_segments)
        result = analysis.analyze_image(gt_map, gt_segments, pred_map, pred_segments)
        for k, c in counts.items():
            e = result.counts.errors.get(k, errors.ErrorCounts())
            assert sum(e.fn(kind) for kind in errors.FN_TYPES) == c.fn
            assert sum(e.fp(kind) for kind in errors.FP_TYPES) == c.fp
            fixed = errors.fixed(c, e, "all", perfect_iou=True)
            if c.gt_segments:  # PQ 1, or nothing left when every segment was a removed error
                assert pq.pq_summary({k: fixed}, categories)["per_class"].get(k, {"pq": 1.0})["pq"] == 1.0
            if c.tp or e.fn_class:
                assert pq.pq_summary({k: fixed}, categories)["per_class"][k]["pq"] == 1.0
        assert set(result.counts.errors) <= set(counts)
        seen |= {r["type"] for r in result.segments()}
    assert seen == set(errors.FN_TYPES) | set(errors.FP_TYPES)  # the random images exercise every rule


def test_records_link_existing_segments_of_the_right_kind():
    rng = np.random.default_rng(6)
    for _ in range(20):
        gt_map, gt_segments, pred_map, pred_segments = random_case(rng, crowd=True, void=True)
        result = analysis.analyze_image(gt_map, gt_segments, pred_map, pred_segments)
        gt_category = {s["id"]: s["category_id"] for s in gt_segments}
        pred_category = {s["id"]: s["category_id"] for s in pred_segments}
        for r in result.segments():
            if r["type"] in ("missed", "background"):
                assert r["linked_id"] == 0
                continue
            linked = (pred_category if r["side"] == "gt" else gt_category)[r["linked_id"]]
            assert (linked != r["category_id"]) == (r["type"] == "class")
