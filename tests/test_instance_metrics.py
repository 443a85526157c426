"""metrics.instance against pycocotools' COCOeval on the same files (AP, per class, per-image matching), and
hand-computed cases for the rules that change numbers."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from metrics import instance
from synthetic.coco import instances_document, toy_images
from tests.oracles import pycocotools_image_counts


def shifted(mask: np.ndarray, rng) -> np.ndarray:
    return np.roll(mask, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))


@pytest.fixture(scope="module")
def case():
    """Ground truth from the synthetic COCO writer (polygons, crowd RLE, id gaps) at sizes that reach all three
    area ranges, and results: shifted copies of the gt masks (some with another class), duplicates, detections on
    crowd regions and random false positives, with random scores."""
    rng = np.random.default_rng(5)
    images = toy_images(8, seed=5, size=(150, 210))
    gt = instances_document(images)
    results = []
    for image in images:
        height, width = image.segment_map.shape
        for annotation in image.instances:
            mask = mask_utils.decode(instance.annotation_rle(annotation["segmentation"], height, width)).astype(bool)
            for _ in range(int(rng.integers(1, 4))):
                category = annotation["category_id"] if rng.random() < 0.8 else 3
                results.append({"image_id": image.id, "category_id": category,
                                "segmentation": instance.encode_mask(shifted(mask, rng)),
                                "score": float(rng.random())})
        for _ in range(3):
            mask = np.zeros((height, width), bool)
            y, x = int(rng.integers(0, height - 40)), int(rng.integers(0, width - 40))
            mask[y:y + int(rng.integers(5, 40)), x:x + int(rng.integers(5, 40))] = True
            results.append({"image_id": image.id, "category_id": int(rng.choice([1, 3, 13, 90])),
                            "segmentation": instance.encode_mask(mask), "score": float(rng.random())})
    assert any(a["iscrowd"] for a in gt["annotations"])
    return gt, results


def assert_same_as_pycocotools(gt, results):
    ours = instance.mask_ap(gt, results)
    reference = instance.pycocotools_evaluation(gt, results)
    for name, value in zip(instance._STATS, reference.stats, strict=True):
        assert ours[name] == (None if value < 0 else pytest.approx(value, abs=1e-12)), name
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for k, category_id in enumerate(reference.params.catIds):
        values = precision[:, :, k][precision[:, :, k] > -1]
        assert ours["per_class"][category_id] == (pytest.approx(values.mean(), abs=1e-12) if values.size else None)
    return ours


def test_mask_ap_equals_pycocotools(case):
    gt, results = case
    ours = assert_same_as_pycocotools(gt, results)
    assert 0.1 < ours["ap"] < 0.9 and ours["ap_small"] is not None and ours["ap_medium"] is not None
    assert sum(v is not None for v in ours["per_class"].values()) == 4  # the classes with ground truth


def test_results_with_boxes_are_binned_by_the_box_as_in_pycocotools(case):
    gt, results = case
    boxed = []
    for r in results:
        x, y, w, h = mask_utils.toBbox(r["segmentation"]).tolist()
        boxed.append(dict(r, bbox=[x, y, 2 * w, 2 * h]))  # a box four times the mask's area
    with_boxes = assert_same_as_pycocotools(gt, boxed)
    without = instance.mask_ap(gt, results)
    assert with_boxes["ap"] == without["ap"] and with_boxes["ap_small"] != without["ap_small"]


def one_image(annotations, height=100, width=100):
    gt = {"images": [{"id": 7, "height": height, "width": width}],
          "annotations": [dict(a, id=k + 1, image_id=7) for k, a in enumerate(annotations)],
          "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    return gt


def square(y, x, side, height=100, width=100):
    mask = np.zeros((height, width), bool)
    mask[y:y + side, x:x + side] = True
    return mask


def gt_annotation(mask, category=1, iscrowd=0, area=None):
    rle = instance.encode_mask(mask)
    return {"category_id": category, "iscrowd": iscrowd, "area": float(mask.sum() if area is None else area),
            "bbox": mask_utils.toBbox(rle).tolist(), "segmentation": rle}


def result(mask, score, category=1):
    return {"image_id": 7, "category_id": category, "segmentation": instance.encode_mask(mask), "score": score}


def test_hand_computed_ap_and_closed_area_ranges():
    gt = one_image([gt_annotation(square(10, 10, 32))])  # area 1024: small and medium (closed ranges)
    perfect = instance.mask_ap(gt, [result(square(10, 10, 32), 0.8)])
    one = pytest.approx(1.0, abs=1e-12)  # hotcoco sums in another order than numpy: equal to the last bits
    assert perfect["ap"] == perfect["ap_small"] == one and perfect["ap_medium"] == one and perfect["ap_large"] is None
    # A false positive scored above the true positive: precision 1/2 at recall 1, so AP = 0.5 at every IoU.
    half = instance.mask_ap(gt, [result(square(60, 60, 20), 0.9), result(square(10, 10, 32), 0.8)])
    assert [half[k] for k in ("ap", "ap50", "ap75")] == [pytest.approx(0.5, abs=1e-12)] * 3
    assert half["per_class"] == {1: pytest.approx(0.5, abs=1e-12), 3: None}
    # The JSON area bins the ground truth, not the pixels: declared 9217, it is large only.
    large = instance.mask_ap(one_image([gt_annotation(square(10, 10, 32), area=9217)]),
                             [result(square(10, 10, 32), 0.8)])
    assert large["ap_large"] == one and large["ap_small"] is None and large["ap_medium"] is None
    for case in (gt, one_image([gt_annotation(square(10, 10, 32), area=9217)])):
        assert_same_as_pycocotools(case, [result(square(10, 10, 32), 0.8)])


def test_unknown_ids_in_results_are_refused():
    gt = one_image([gt_annotation(square(10, 10, 32))])
    with pytest.raises(ValueError, match=r"results name image ids \[8\]"):
        instance.mask_ap(gt, [dict(result(square(0, 0, 5), 0.5), image_id=8)])
    with pytest.raises(ValueError, match=r"category ids \[0\] .*contiguous class ids instead of the file's"):
        instance.mask_ap(gt, [result(square(0, 0, 5), 0.5, category=0)])
    assert instance.mask_ap(gt, [])["ap"] == 0.0  # no detections: nothing found


def test_image_counts_match_cocoeval(case):
    gt, results = case
    evaluator = instance.pycocotools_evaluation(gt, results)
    for threshold, t_index in ((0.5, 0), (0.75, 5)):
        expected = pycocotools_image_counts(evaluator, t_index)
        ours = {}
        for image in gt["images"]:
            counts = instance.image_counts([a for a in gt["annotations"] if a["image_id"] == image["id"]],
                                           [r for r in results if r["image_id"] == image["id"]],
                                           image["height"], image["width"])
            for category, c in counts[threshold].items():
                ours[image["id"], category] = (c.tp, c.fp, c.fn)
        assert ours == expected
    assert any(tp and fp for tp, fp, _ in expected.values()) and any(fn for *_, fn in expected.values())


def test_image_ap_is_cocoevals_on_the_image_alone(case):
    """Each image's own AP per category at IoU 0.5 and 0.75 equals pycocotools run on that image alone (precision
    at area "all", 100 detections, averaged over recall points; None where it has -1)."""
    gt, results = case
    compared = 0
    for image in gt["images"]:
        annotations = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        found = [r for r in results if r["image_id"] == image["id"]]
        reference = instance.pycocotools_evaluation(dict(gt, images=[image], annotations=annotations), found)
        counts = instance.image_counts(annotations, found, image["height"], image["width"])
        for threshold, t_index in ((0.5, 0), (0.75, 5)):
            for k, category_id in enumerate(reference.params.catIds):
                values = reference.eval["precision"][t_index, :, k, 0, -1]
                expected = float(values.mean()) if (values > -1).any() else None
                ours = counts[threshold].get(category_id, instance.MatchCounts()).ap
                assert ours == (None if expected is None else pytest.approx(expected, abs=1e-12)), \
                    (image["id"], threshold, category_id)
                compared += expected is not None and 0 < expected < 1
    assert compared > 10  # APs strictly between 0 and 1: the precision curve matters, not only hits and misses


def test_image_counts_hand_case_with_a_crowd_region():
    crowd = square(50, 50, 40)
    gt = one_image([gt_annotation(square(0, 0, 20)), gt_annotation(square(0, 40, 20)),
                    gt_annotation(crowd, iscrowd=1)])["annotations"]
    results = [result(square(0, 0, 20), 0.9),  # TP
               result(square(0, 0, 20), 0.8),  # a duplicate: its gt is taken -> FP
               result(square(55, 55, 10), 0.7),  # inside the crowd region: ignored
               result(square(0, 40, 20), 0.6, category=3)]  # another class: FP for car, the person is FN
    counts = instance.image_counts(gt, results, 100, 100)
    # AP of the person: precision 1 up to recall 1/2 (the TP first), never more recall: 51 of 101 points.
    assert counts[0.5][1] == instance.MatchCounts(tp=1, fp=1, fn=1, ap=pytest.approx(51 / 101, abs=1e-15))
    assert counts[0.5][3] == instance.MatchCounts(tp=0, fp=1, fn=0, ap=None)  # no car in the ground truth
    assert instance.total_counts(counts[0.75]) == instance.MatchCounts(tp=1, fp=2, fn=1)


def test_predictions_into_coco_results():
    shared = square(0, 0, 10)
    instances = [{"mask": shared, "category_id": 0, "score": 0.2}, {"mask": square(5, 5, 10), "category_id": 1,
                                                                    "score": 0.9},
                 {"mask": shared, "category_id": 1, "score": 0.5}]
    results = instance.results_from_instances(42, instances, category_ids=[1, 3], top_k=2)
    assert [(r["category_id"], r["score"]) for r in results] == [(3, 0.9), (3, 0.5)]
    assert all(set(r) == {"image_id", "category_id", "segmentation", "score"} for r in results)  # no bbox
    assert (mask_utils.decode(results[1]["segmentation"]) == shared).all()
    assert isinstance(results[0]["segmentation"]["counts"], str)
    everything = instance.results_from_instances(42, instances)
    assert everything[1]["segmentation"] is everything[2]["segmentation"]  # one encoding per shared mask
    assert [r["category_id"] for r in everything] == [1, 1, 0]


def test_panoptic_into_instances_and_ground_truth():
    segment_map = np.full((4, 5), -1)
    segment_map[:2, :2], segment_map[2:, :] = 0, 1
    segment_map[0, 4] = 2
    segments = [{"id": 0, "category_id": 4, "isthing": True, "score": 0.7},
                {"id": 1, "category_id": 90, "isthing": False, "score": 0.9},
                {"id": 2, "category_id": 5, "isthing": True, "score": 0.4, "iscrowd": 1}]
    things = instance.instances_from_panoptic(segment_map, segments)
    assert [(t["category_id"], t["score"], int(t["mask"].sum())) for t in things] == [(4, 0.7, 4), (5, 0.4, 1)]
    annotations = instance.annotations_from_panoptic(segment_map, segments, image_id=3)
    assert [(a["id"], a["category_id"], a["iscrowd"], a["area"], a["bbox"]) for a in annotations] == [
        (1, 4, 0, 4.0, [0.0, 0.0, 2.0, 2.0]), (2, 5, 1, 1.0, [4.0, 0.0, 1.0, 1.0])]
    assert (mask_utils.decode(annotations[0]["segmentation"]) == (segment_map == 0)).all()


def test_tide_error_types_and_calibration_by_hand():
    """One error of each TIDE type, counted and priced as tidecv defines them, and the calibration of five
    detections (hotcoco computes both; the numbers here are worked out by hand)."""
    gt = one_image([gt_annotation(square(0, 0, 20)), gt_annotation(square(0, 40, 20)),
                    gt_annotation(square(50, 50, 20)), gt_annotation(square(50, 0, 20), category=3),
                    gt_annotation(square(82, 0, 15), category=3)])
    results = [result(square(0, 0, 20), 0.9),  # TP
               result(square(0, 0, 20), 0.8),  # the same person again: duplicate
               result(square(0, 40, 20), 0.7, category=3),  # the right mask as a car: classification
               result(square(55, 55, 20), 0.6),  # IoU 225 / 575 with a person: localisation
               result(square(80, 80, 15), 0.5),  # on nothing: background
               result(square(60, 10, 20), 0.4)]  # a "person" with IoU 100 / 700 on the first car: both
    # Both cars are missed: the second is touched by nothing, and tidecv fixes a "both" error by removing the
    # detection (which object it meant is unclear), so it covers no object.
    found = instance.mask_ap(gt, results, diagnostics=True)
    tide = found["tide"]
    assert tide["counts"] == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1, "Miss": 2}
    # AP@0.5: person precision 1 up to recall 1/3 (34 of 101 recall points), the car 0.
    assert tide["ap"] == pytest.approx(34 / 101 / 2, abs=1e-12) == found["ap50"]
    # Fixing the class makes the 0.7 detection a person TP: precision 2/3 up to recall 2/3 (33 more points).
    assert tide["delta_ap"]["Cls"] == pytest.approx((34 + 33 * 2 / 3) / 101 / 2 - 34 / 101 / 2, abs=1e-12)
    calibration = found["calibration"]
    assert calibration["detections"] == 6 and calibration["mce"] == pytest.approx(0.8)
    assert calibration["ece"] == pytest.approx((0.1 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4) / 6)  # only the 0.9 one is right
    assert [b[4] for b in calibration["bins"]] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]


def test_compare_ap_gives_the_difference_and_a_paired_interval(case):
    gt, results = case
    heights = {image["id"]: (image["height"], image["width"]) for image in gt["images"]}
    # B: A plus a false positive ranked first for every object (a 3 x 3 speck of its class in a corner).
    worse = results + [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                        "segmentation": instance.encode_mask(square(0, 0, 3, *heights[a["image_id"]]))}
                       for a in gt["annotations"] if not a["iscrowd"]]
    compared = instance.compare_ap(gt, results, worse, resamples=200)
    a, b = instance.mask_ap(gt, results), instance.mask_ap(gt, worse)
    for name in ("ap", "ap50", "ap75"):
        c = compared[name]
        assert (c["a"], c["b"]) == (pytest.approx(a[name], abs=1e-12), pytest.approx(b[name], abs=1e-12))
        assert c["delta"] == pytest.approx(a[name] - b[name], abs=1e-12)
        assert c["low"] <= c["delta"] <= c["high"]
    assert compared["ap50"]["low"] > 0  # false positives above every true one cost, on every resample
    itself = instance.compare_ap(gt, results, results, resamples=50)
    assert all(itself[n]["delta"] == itself[n]["low"] == itself[n]["high"] == 0 for n in itself)
