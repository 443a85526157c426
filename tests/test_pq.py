"""metrics.pq against hand-computed fixtures (one per panopticapi rule), an independent straightforward
implementation (bench/metrics.py) and torchmetrics' PanopticQuality; also instance counts and semantic mIoU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from metrics import pq
from metrics.instance_counts import instance_counts
from metrics.semantic import ConfusionMatrix, ade20k_labels

ROOT = Path(__file__).resolve().parents[1]


def seg(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def counts(gt, gt_segments, pred, pred_segments, **kwargs):
    return pq.image_counts(np.array(gt, dtype=np.int32), gt_segments, np.array(pred, dtype=np.int32),
                           pred_segments, **kwargs)


def C(tp=0, fp=0, fn=0, iou_sum=0.0, gt_segments=0, pred_segments=0):
    return pq.CategoryCounts(tp, fp, fn, iou_sum, gt_segments, pred_segments)


# --- hand-computed fixtures, one per rule ---------------------------------------------------------------------

def test_iou_of_exactly_one_half_is_not_a_match():
    # gt 1 has 4 pixels, pred 1 covers 2 of them: IoU = 2 / (2 + 4 - 2) = 0.5, not > 0.5.
    result = counts([[1, 1, 1, 1]], [seg(1, 5)], [[1, 1, 2, 2]], [seg(1, 5), seg(2, 6)])
    assert result == {5: C(fp=1, fn=1, gt_segments=1, pred_segments=1), 6: C(fp=1, pred_segments=1)}
    # One more pixel: IoU = 3 / 4 matches.
    result = counts([[1, 1, 1, 1]], [seg(1, 5)], [[1, 1, 1, 2]], [seg(1, 5), seg(2, 6)])
    assert result == {5: C(tp=1, iou_sum=0.75, gt_segments=1, pred_segments=1), 6: C(fp=1, pred_segments=1)}


def test_prediction_pixels_on_void_leave_the_union():
    # pred 1 covers gt 1 and two void pixels: union = 4 + 2 - 2 - 2 = 2, IoU 1.
    result = counts([[1, 1, 0, 0]], [seg(1, 5)], [[1, 1, 1, 1]], [seg(1, 5)])
    assert result == {5: C(tp=1, iou_sum=1.0, gt_segments=1, pred_segments=1)}


def test_prediction_mostly_on_void_is_not_a_false_positive():
    gt = [[0, 0, 0, 2, 2, 2, 2, 2]]
    # pred 1 (category 5): 3 of its 4 pixels on void -> ignored; pred 3 matches gt 2 with IoU 4 / 5.
    result = counts(gt, [seg(2, 7)], [[1, 1, 1, 1, 3, 3, 3, 3]], [seg(1, 5), seg(3, 7)])
    assert result == {5: C(pred_segments=1), 7: C(tp=1, iou_sum=0.8, gt_segments=1, pred_segments=1)}
    # Exactly half on void is still a false positive.
    result = counts(gt, [seg(2, 7)], [[0, 1, 1, 1, 1, 3, 3, 3]], [seg(1, 5), seg(3, 7)])
    assert result[5] == C(fp=1, pred_segments=1)
    assert result[7] == C(tp=1, iou_sum=0.6, gt_segments=1, pred_segments=1)


def test_crowd_regions():
    gt = [[9, 9, 9, 9, 1, 1, 1, 1]]
    gt_segments = [seg(9, 5, iscrowd=1), seg(1, 5)]
    # A prediction equal to the crowd region never matches it, and the crowd is no false negative; it is not a
    # false positive either: all of it lies on a crowd region of its own category.
    result = counts(gt, gt_segments, [[2, 2, 2, 2, 1, 1, 1, 1]], [seg(2, 5), seg(1, 5)])
    assert result == {5: C(tp=1, iou_sum=1.0, gt_segments=1, pred_segments=2)}
    # The same pixels predicted as another category are a false positive.
    result = counts(gt, gt_segments, [[2, 2, 2, 2, 1, 1, 1, 1]], [seg(2, 6), seg(1, 5)])
    assert result[6] == C(fp=1, pred_segments=1)
    # Void and crowd add up: 1 void + 1 crowd pixel of 3 is more than half.
    gt = [[9, 9, 0, 1, 1, 1, 1, 1]]
    result = counts(gt, gt_segments, [[0, 2, 2, 2, 0, 0, 0, 0]], [seg(2, 5)])
    assert result == {5: C(fn=1, gt_segments=1, pred_segments=1)}


def test_only_the_last_crowd_segment_of_a_category_is_remembered():
    # panopticapi keeps one crowd id per category (the last in the JSON): a prediction on the first is an FP.
    gt = [[8, 8, 9, 9]]
    gt_segments = [seg(8, 5, iscrowd=1), seg(9, 5, iscrowd=1)]
    assert counts(gt, gt_segments, [[1, 1, 0, 0]], [seg(1, 5)]) == {5: C(fp=1, pred_segments=1)}
    assert counts(gt, gt_segments, [[0, 0, 1, 1]], [seg(1, 5)]) == {5: C(pred_segments=1)}


def test_stuff_is_not_merged_by_the_metric():
    # One gt stuff segment in two disjoint parts; a prediction that splits it into two segments gets one match
    # (the larger part, IoU 4 / 6) and one false positive. A merged prediction is a perfect match.
    gt = [[3, 3, 3, 3, 0, 3, 3]]
    result = counts(gt, [seg(3, 1)], [[1, 1, 1, 1, 0, 2, 2]], [seg(1, 1), seg(2, 1)])
    assert result == {1: C(tp=1, fp=1, iou_sum=4 / 6, gt_segments=1, pred_segments=2)}
    result = counts(gt, [seg(3, 1)], [[1, 1, 1, 1, 0, 1, 1]], [seg(1, 1)])
    assert result == {1: C(tp=1, iou_sum=1.0, gt_segments=1, pred_segments=1)}


def test_image_with_nothing_active_has_null_pq():
    assert counts([[0, 0]], [], [[0, 0]], []) == {}
    summary = pq.pq_summary({}, {1: True, 2: False})
    assert summary["All"] == {"pq": None, "sq": None, "rq": None, "n": 0}
    assert summary["Things"]["n"] == summary["Stuff"]["n"] == 0 and summary["per_class"] == {}
    # A prediction ignored on void is counted as a segment but activates nothing.
    ignored = counts([[0, 0]], [], [[1, 1]], [seg(1, 5)])
    assert ignored == {5: C(pred_segments=1)}
    assert pq.pq_summary(ignored, {5: True})["All"]["pq"] is None


def test_category_present_only_in_the_prediction():
    result = counts([[1, 1, 0, 0]], [seg(1, 5)], [[1, 1, 2, 3]], [seg(1, 5), seg(2, 8), seg(3, 9)])
    assert result[8] == C(pred_segments=1)  # on void: ignored
    result = counts([[1, 1, 1, 1]], [seg(1, 5)], [[1, 1, 1, 2]], [seg(1, 5), seg(2, 8)])
    assert result[8] == C(fp=1, pred_segments=1)
    summary = pq.pq_summary(result, {5: True, 8: False})
    assert summary["per_class"][8] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 0, "iou_sum": 0.0}
    assert summary["All"]["n"] == 2 and summary["All"]["pq"] == pytest.approx(0.75 / 2)
    assert summary["Things"] == {"pq": 0.75, "sq": 0.75, "rq": 1.0, "n": 1}
    assert summary["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}


def test_unlisted_gt_ids_are_ignored_not_void():
    # gt id 4 is in the map but not in the segments (panopticapi skips it): a prediction on it is no match, and
    # since those pixels are not void, it is a false positive.
    result = counts([[1, 1, 4, 4]], [seg(1, 5)], [[1, 1, 2, 2]], [seg(1, 5), seg(2, 5)])
    assert result == {5: C(tp=1, fp=1, iou_sum=1.0, gt_segments=1, pred_segments=2)}


def test_pq_is_computed_directly_not_as_sq_times_rq():
    c = C(tp=3, fp=1, fn=2, iou_sum=2.1)
    per_class = pq.pq_summary({7: c}, {7: True})["per_class"][7]
    assert per_class["pq"] == 2.1 / (3 + 0.5 * 1 + 0.5 * 2)
    assert per_class["sq"] == 2.1 / 3 and per_class["rq"] == 3 / (3 + 0.5 * 1 + 0.5 * 2)


def test_averages_follow_category_order_and_split_things_and_stuff():
    total = {1: C(tp=1, iou_sum=0.9), 2: C(fn=1), 3: C(tp=2, fp=2, iou_sum=1.5), 4: C(pred_segments=1)}
    categories = {3: False, 2: True, 1: True, 4: False}
    summary = pq.pq_summary(total, categories)
    assert list(summary["per_class"]) == [3, 2, 1]
    assert summary["Things"] == {"pq": (0.0 + 0.9) / 2, "sq": (0.0 + 0.9) / 2, "rq": (0.0 + 1.0) / 2, "n": 2}
    assert summary["Stuff"]["n"] == 1 and summary["Stuff"]["pq"] == 1.5 / 3
    assert summary["All"]["pq"] == (1.5 / 3 + 0.0 + 0.9) / 3
    with pytest.raises(pq.PanopticFormatError, match="unknown category_id 1"):
        pq.pq_summary(total, {2: True, 3: False, 4: False})


def test_sum_counts_adds_category_by_category():
    a = {1: C(tp=1, iou_sum=0.75, gt_segments=1, pred_segments=1)}
    b = {1: C(fp=1, pred_segments=1), 2: C(fn=1, gt_segments=1)}
    total = pq.sum_counts([a, b])
    assert total == {1: C(tp=1, fp=1, iou_sum=0.75, gt_segments=1, pred_segments=2), 2: C(fn=1, gt_segments=1)}
    assert a[1] == C(tp=1, iou_sum=0.75, gt_segments=1, pred_segments=1)  # inputs untouched


def test_gt_areas_from_json_reproduce_panopticapi_on_stale_areas():
    # Mask2Former's JSON records a stuff area before things were painted over it: panopticapi uses that area,
    # so a perfect prediction scores IoU 2 / 4 = 0.5 (not even a match); the map's own area gives IoU 1.
    gt = [[1, 1, 2, 2]]
    gt_segments = [dict(seg(1, 0), area=4), dict(seg(2, 7), area=2)]
    pred_segments = [seg(1, 0), seg(2, 7)]
    assert counts(gt, gt_segments, gt, pred_segments)[0] == C(tp=1, iou_sum=1.0, gt_segments=1, pred_segments=1)
    stale = counts(gt, gt_segments, gt, pred_segments, gt_areas_from_json=True)
    assert stale[0] == C(fp=1, fn=1, gt_segments=1, pred_segments=1)
    with pytest.raises(pq.PanopticFormatError, match="no 'area'"):
        counts(gt, [seg(1, 0), seg(2, 7)], gt, pred_segments, gt_areas_from_json=True)


def test_malformed_inputs_raise_panopticapi_errors():
    with pytest.raises(pq.PanopticFormatError, match="segment with ID 3 is presented in PNG and not presented in JSON"):
        counts([[1, 1]], [seg(1, 5)], [[1, 3]], [seg(1, 5)])
    with pytest.raises(pq.PanopticFormatError, match=r"segment IDs \[2\] are presented in JSON and not .* PNG"):
        counts([[1, 1]], [seg(1, 5)], [[1, 1]], [seg(1, 5), seg(2, 5)])
    with pytest.raises(pq.PanopticFormatError, match="not unique"):
        counts([[1, 1]], [seg(1, 5)], [[1, 1]], [seg(1, 5), seg(1, 6)])
    with pytest.raises(pq.PanopticFormatError, match=r"\(1, 2\) but prediction is \(2, 1\)"):
        counts([[1, 1]], [seg(1, 5)], [[1], [1]], [seg(1, 5)])


def test_large_ids_give_the_same_counts():
    rng = np.random.default_rng(1)
    for _ in range(5):
        gt_map, gt_segments, pred_map, pred_segments = random_case(rng, crowd=True, void=True)
        small = pq.image_counts(gt_map, gt_segments, pred_map, pred_segments)
        # RGB-sized ids (as read from COCO PNGs) take the np.unique path
        big = lambda ids: np.where(ids > 0, ids * 65599 % (1 << 24), 0)  # noqa: E731 (injective on these ids)
        relabel = [dict(s, id=int(big(np.int64(s["id"])))) for s in gt_segments]
        relabel_pred = [dict(s, id=int(big(np.int64(s["id"])))) for s in pred_segments]
        assert pq.image_counts(big(gt_map), relabel, big(pred_map), relabel_pred) == small


# --- random cases against independent implementations --------------------------------------------------------

def random_case(rng, crowd=False, void=False, height=32, width=48, cell=8, things=range(0, 5), stuffs=range(5, 8)):
    """Blocky gt and pred maps; segments are (category, instance) colours, stuff has instance 0 (one segment per
    category, as torchmetrics sees it). The prediction shifts the gt by a pixel or two and repaints a few cells.
    Returns (gt_map, gt_segments, pred_map, pred_segments); the colour maps are left in random_case.colour_maps."""
    def colours(n):
        categories = rng.choice([*things, *stuffs], size=n)
        return [(int(c), 0 if c in stuffs else int(rng.integers(1, 4))) for c in categories]

    def upsample(coarse):
        return np.kron(coarse, np.ones((cell, cell), dtype=coarse.dtype))

    grid = (height // cell, width // cell)
    cells = upsample(rng.integers(0, 6, size=grid))
    gt_colours = colours(6)
    pred_cells = np.roll(cells, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    repaint = upsample(rng.random(grid) < 0.15)
    pred_cells[repaint] = upsample(rng.integers(6, 9, size=grid))[repaint]
    pred_colours = [c if rng.random() < 0.85 else colours(1)[0] for c in gt_colours] + colours(3)

    def to_map(per_pixel, palette):
        colour_map = np.array(palette)[per_pixel]  # (H, W, 2)
        if void:
            colour_map[rng.random((height, width)) < 0.1] = -1
        keys = colour_map[..., 0] * 16 + colour_map[..., 1]
        ids = {k: i + 1 for i, k in enumerate(sorted(set(np.unique(keys).tolist()) - {-17}))}
        segment_map = np.vectorize(lambda k: ids.get(k, 0))(keys).astype(np.int32)
        segments = [{"id": i, "category_id": k // 16, "iscrowd": 0} for k, i in ids.items()]
        return segment_map, segments, colour_map

    gt_map, gt_segments, gt_colour_map = to_map(cells, gt_colours)
    pred_map, pred_segments, pred_colour_map = to_map(pred_cells, pred_colours)
    if crowd:
        for s in gt_segments:
            s["iscrowd"] = int(rng.random() < 0.2)
    random_case.colour_maps = gt_colour_map, pred_colour_map
    return gt_map, gt_segments, pred_map, pred_segments


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "bench" / "metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agrees_with_the_straightforward_implementation_with_crowd_and_void():
    bench = load_bench()
    rng = np.random.default_rng(2)
    for _ in range(60):
        case = random_case(rng, crowd=True, void=True)
        assert pq.image_counts(*case) == bench.straightforward_counts(*case)
    case = bench.synthetic_pair(np.random.default_rng(3))  # ADE20K-sized, sparse ids
    assert pq.image_counts(*case) == bench.straightforward_counts(*case)


def test_counts_do_not_depend_on_dtype_layout_or_runs():
    # Pixels are counted per run of equal (gt, pred) ids along the flattened map: noisy maps (a run per pixel),
    # every integer dtype, non-contiguous views and single pixels must all count like the dict implementation.
    bench = load_bench()
    rng = np.random.default_rng(5)
    for _ in range(10):
        gt_map, gt_segments, pred_map, pred_segments = random_case(rng, crowd=True, void=True)
        expected = bench.straightforward_counts(gt_map, gt_segments, pred_map, pred_segments)
        for dtype in (np.uint8, np.uint16, np.int16, np.uint32, np.int64, np.uint64):
            assert pq.image_counts(gt_map.astype(dtype), gt_segments, pred_map.astype(dtype), pred_segments) \
                == expected
        transposed = pq.image_counts(gt_map.T.copy().T, gt_segments, pred_map.T.copy().T, pred_segments)
        assert transposed == expected  # Fortran-ordered arrays, same pixels
        assert pq.image_counts(gt_map.T, gt_segments, pred_map.T, pred_segments) == \
            bench.straightforward_counts(gt_map.T, gt_segments, pred_map.T, pred_segments)
    noise = rng.integers(0, 4, size=(16, 16))  # ids change at nearly every pixel
    segments = [seg(i, i % 2) for i in (1, 2, 3)]
    assert pq.image_counts(noise, segments, noise[::-1].copy(), segments) == \
        bench.straightforward_counts(noise, segments, noise[::-1].copy(), segments)
    assert counts([[1]], [seg(1, 5)], [[1]], [seg(1, 5)]) == {5: C(tp=1, iou_sum=1.0, gt_segments=1,
                                                                    pred_segments=1)}
    match = pq.match_image(np.array([[0, 1, 1, 7]]), [seg(1, 5)], np.array([[2, 2, 2, 2]]), [seg(2, 5)])
    assert match.matrix.tolist() == [[0, 1, 0], [0, 2, 0], [0, 1, 0]]  # void, gt 1, unlisted gt 7 x pred 2
    assert match.matrix.dtype == np.int64


def test_agrees_with_torchmetrics_without_crowd_or_void():
    torch = pytest.importorskip("torch")
    from torchmetrics.detection import PanopticQuality

    things, stuffs = set(range(0, 5)), set(range(5, 8))
    categories = {c: c in things for c in sorted(things | stuffs)}
    rng = np.random.default_rng(4)
    seen = C()
    for trial in range(4):
        per_class = PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True, return_per_class=True)
        means = PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True)
        per_image = []
        for _ in range(5):
            gt_map, gt_segments, pred_map, pred_segments = random_case(rng)
            gt_colours, pred_colours = (torch.from_numpy(m[None]) for m in random_case.colour_maps)
            per_class.update(pred_colours, gt_colours)
            means.update(pred_colours, gt_colours)
            per_image.append(pq.image_counts(gt_map, gt_segments, pred_map, pred_segments))
        total = pq.sum_counts(per_image)
        seen = sum(total.values(), seen)
        summary = pq.pq_summary(total, categories)
        expected = per_class.compute().double().numpy()  # (classes, 3): pq, sq, rq per class, things first
        for row, category_id in enumerate(sorted(things) + sorted(stuffs)):
            if category_id in summary["per_class"]:
                ours = summary["per_class"][category_id]
                assert expected[row] == pytest.approx([ours["pq"], ours["sq"], ours["rq"]], abs=1e-6), trial
            else:
                assert (expected[row] == 0).all()
        all_ = summary["All"]
        assert means.compute().double().numpy() == pytest.approx([all_["pq"], all_["sq"], all_["rq"]], abs=1e-6)
    assert seen.tp > 10 and seen.fp > 10 and seen.fn > 10  # the cases exercise every kind of count


# --- instance counts and semantic mIoU -----------------------------------------------------------------------

def test_instance_counts_count_things_and_give_stuff_one():
    names = {0: "wall", 12: "person", 7: "bed"}
    segments = [{"id": 1, "category_id": 12, "isthing": True}, {"id": 2, "category_id": 0, "isthing": False},
                {"id": 3, "category_id": 12, "isthing": True}, {"id": 4, "category_id": 0, "isthing": False}]
    assert instance_counts(segments, names) == {"wall": 1, "person": 2}
    plain = [{k: v for k, v in s.items() if k != "isthing"} for s in segments]
    assert instance_counts(plain, names, thing_ids={7, 12}) == {"wall": 1, "person": 2}
    assert instance_counts([], names) == {}
    with pytest.raises(ValueError, match="category_id 99"):
        instance_counts([{"id": 1, "category_id": 99}], names)


def test_confusion_matrix_miou_with_ignore_label():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 9, 0, 1]])  # 9 is no class; pixels under 255 are ignored
    matrix = ConfusionMatrix(3)
    matrix.update(gt, pred)
    # class 0: tp 1, gt 2, pred 1 -> 1/2; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 1, gt 2, pred 1 -> 1/2
    assert matrix.iou() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert matrix.miou() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert matrix.pixel_accuracy() == pytest.approx(4 / 6)
    matrix.update(gt, gt)  # accumulates
    assert matrix.matrix.sum() == 12
    empty = ConfusionMatrix(4)
    assert empty.miou() is None and np.isnan(empty.iou()).all()
    assert ade20k_labels(np.array([[0, 1, 150]], dtype=np.uint8)).tolist() == [[255, 0, 149]]
