"""hotcoco as the engine of dataset-level PQ: bit for bit metrics.pq's counts, and metrics.pq wherever the two
would part (input hotcoco reads differently, errors); pq_compute's image-by-image engine on several threads."""

from __future__ import annotations

import json
import re

import hotcoco  # noqa: F401 -- a requirement: without it these tests must fail, not skip
import numpy as np
import pytest
from PIL import Image
from test_coco_panoptic import write_dataset, write_png

from metrics import coco_panoptic as cp
from metrics import pq, pq_hotcoco

CATEGORIES = [{"id": c, "name": f"class{c}", "isthing": int(c < 5), "color": [0, 0, 0]} for c in range(8)]


def blocky_pair(rng, height=64, width=96, cell=8, n=24):
    """Ground truth: 8x8 cells painted with n segments of 8 categories (about three instances each), a few void
    cells and void speckles, some crowd segments. Prediction: the cells shifted by up to two pixels, some repainted
    with new segments, some segments given another category. Maps hold indices 1..; segments are (index, category,
    iscrowd)."""
    def upsample(grid):
        return np.kron(grid, np.ones((cell, cell), dtype=grid.dtype))

    grid = (height // cell, width // cell)
    gt_map = upsample(rng.integers(0, n + 1, size=grid))  # 0: void cells
    gt_map[rng.random(gt_map.shape) < 0.03] = 0
    categories = rng.integers(0, 8, size=n + 1)
    gt_segments = [(k, int(categories[k]), int(rng.random() < 0.1)) for k in np.unique(gt_map) if k]
    pred_map = np.roll(gt_map, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    repaint = upsample(rng.random(grid) < 0.15)
    pred_map[repaint] = upsample(rng.integers(n + 1, n + 4, size=grid))[repaint]
    pred_categories = np.concatenate([np.where(rng.random(n + 1) < 0.1, rng.integers(0, 8, n + 1), categories),
                                      rng.integers(0, 8, size=3)])
    pred_segments = [(k, int(pred_categories[k]), 0) for k in np.unique(pred_map) if k]
    return gt_map, gt_segments, pred_map, pred_segments


def write_files(root, rng, n_images=10, alpha=False):
    """gt/ + gt.json and pred/ + pred.json of blocky_pair images: 24-bit ids, void, crowd regions, several
    instances of a category per image, a ground-truth id missing from its segment list, and ground-truth areas in
    the JSON that overstate some segments (as stale areas do). Returns the two JSON paths."""
    annotations = {"gt": [], "pred": []}
    for image_id in range(1, n_images + 1):
        gt_map, gt_segments, pred_map, pred_segments = blocky_pair(rng)
        name = f"ADE_val_{image_id:08d}.png"
        for which, segment_map, segments in (("gt", gt_map, gt_segments), ("pred", pred_map, pred_segments)):
            lut = np.concatenate([[0], rng.choice(np.arange(1, cp.MAX_ID + 1), size=segment_map.max(),
                                                  replace=False)])
            info = [{"id": int(lut[k]), "category_id": category, "iscrowd": crowd} for k, category, crowd in segments]
            if which == "gt":
                areas = np.bincount(segment_map.ravel(), minlength=len(lut))
                for s, (k, _, _) in zip(info, segments, strict=True):
                    s["area"] = int(areas[k]) + int(rng.integers(0, 3)) * int(rng.random() < 0.3)
                info = info[1:]  # its pixels stay in the PNG: an unlisted id, ignored rather than void
            path = root / which / name
            if alpha and which == "pred":
                rgba = np.concatenate([cp.id2rgb(lut[segment_map]),
                                       rng.integers(1, 256, size=segment_map.shape + (1,), dtype=np.uint8)], -1)
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgba, mode="RGBA").save(path)
            else:
                write_png(path, lut[segment_map])
            annotations[which].append({"image_id": image_id, "file_name": name, "segments_info": info})
    paths = []
    for which, entries in annotations.items():
        paths.append(root / f"{which}.json")
        paths[-1].write_text(json.dumps({"annotations": entries, "categories": CATEGORIES}))
    return paths


def pairs_of(gt_json, pred_json):
    gt, pred = cp.read_json(gt_json), cp.read_json(pred_json)
    predictions = {a["image_id"]: a for a in pred["annotations"]}
    return [(a, predictions[a["image_id"]]) for a in gt["annotations"]]


def our_counts(root, pairs):
    return [pq.image_counts(cp.read_png(root / "gt" / g["file_name"]), g["segments_info"],
                            cp.read_png(root / "pred" / p["file_name"]), p["segments_info"], gt_areas_from_json=True)
            for g, p in pairs]


ISTHING = {c["id"]: bool(c["isthing"]) for c in CATEGORIES}


@pytest.mark.parametrize("seed, alpha", [(0, False), (1, True), (2, False)])
def test_hotcoco_counts_are_ours_bit_for_bit(tmp_path, seed, alpha):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(seed), alpha=alpha)
    pairs = pairs_of(gt_json, pred_json)
    per_image = our_counts(tmp_path, pairs)
    # The data exercises what could tell the two apart: three or more IoUs of one category added in one image
    # (their order changes the last bit), crowd absorbing a prediction, overstated areas, unlisted ids.
    assert max(c.tp for counts in per_image for c in counts.values()) >= 3
    assert sum(c.tp for counts in per_image for c in counts.values()) >= 50
    assert any(s["iscrowd"] for g, _ in pairs for s in g["segments_info"])

    hot = pq_hotcoco.dataset_counts(gt_json, pred_json, pairs, ISTHING, tmp_path / "gt", tmp_path / "pred")
    assert hot is not None, "hotcoco declined plain input"
    ours = {k: c for k, c in pq.sum_counts(per_image).items() if c.tp + c.fp + c.fn}
    assert {k: (c.tp, c.fp, c.fn, c.iou_sum) for k, c in hot.items()} == \
        {k: (c.tp, c.fp, c.fn, c.iou_sum) for k, c in ours.items()}
    assert cp.pq_compute(gt_json, pred_json) == cp.pq_compute(gt_json, pred_json, engine="numpy")


def test_the_fixture_of_test_coco_panoptic_through_hotcoco(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    pairs = pairs_of(gt_json, pred_json)
    categories = cp._categories(cp.read_json(gt_json), gt_json)
    assert pq_hotcoco.dataset_counts(gt_json, pred_json, pairs, categories, tmp_path / "gt", tmp_path / "pred") \
        is not None


def edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def first_gt(document):
    return document["annotations"][0]["segments_info"][0]


@pytest.mark.parametrize("change", [
    lambda g, p: g["annotations"][0]["segments_info"].append(dict(first_gt(g))),  # repeated id
    lambda g, p: first_gt(g).update(id=0),
    lambda g, p: first_gt(g).update(id=float(first_gt(g)["id"])),
    lambda g, p: first_gt(g).pop("area"),
    lambda g, p: first_gt(g).update(area=-1),
    lambda g, p: first_gt(g).update(iscrowd=2),
    lambda g, p: first_gt(g).update(category_id=99),
    lambda g, p: g["annotations"][1].update(image_id="two") or p["annotations"][1].update(image_id="two"),
    lambda g, p: p["annotations"][0].update(file_name="sub/ADE_val_00000001.png"),
])
def test_input_read_differently_goes_to_metrics_pq(tmp_path, change):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(3), n_images=3)
    gt, pred = json.loads(gt_json.read_text()), json.loads(pred_json.read_text())
    change(gt, pred)
    gt_json.write_text(json.dumps(gt))
    pred_json.write_text(json.dumps(pred))
    try:
        pairs = pairs_of(gt_json, pred_json)
    except cp.CocoPanopticError as refused:  # refused as malformed before any engine sees it (a float id)
        for engine in ("auto", "numpy"):
            with pytest.raises(cp.CocoPanopticError, match=re.escape(str(refused))):
                cp.pq_compute(gt_json, pred_json, engine=engine)
        return
    assert not pq_hotcoco.plain_input(pairs, ISTHING)
    assert pq_hotcoco.dataset_counts(gt_json, pred_json, pairs, ISTHING, tmp_path / "gt", tmp_path / "pred") is None
    outcomes = []
    for engine in ("auto", "numpy"):
        try:
            outcomes.append(cp.pq_compute(gt_json, pred_json, engine=engine))
        except (cp.CocoPanopticError, FileNotFoundError) as e:  # the subfolder does not exist
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("break_it, message", [
    (lambda root, p: p["annotations"][0]["segments_info"].pop(), "is presented in PNG and not presented in JSON"),
    (lambda root, p: p["annotations"][1]["segments_info"].append({"id": 77, "category_id": 7}),
     r"IDs \[77\] are presented in JSON and not presented in PNG"),
    (lambda root, p: (root / "pred" / "ADE_val_00000002.png").unlink(), "ADE_val_00000002.png: file not found"),
    (lambda root, p: write_png(root / "pred" / "ADE_val_00000002.png", np.zeros((2, 2), np.int32)),
     r"In the image with ID 2 ground truth is \(64, 96\) but prediction is \(2, 2\)"),
    (lambda root, p: Image.fromarray(np.zeros((64, 96), np.uint8)).save(root / "gt" / "ADE_val_00000003.png"),
     "a panoptic PNG must be RGB, this one is mode L"),
    (lambda root, p: (root / "gt" / "ADE_val_00000001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
     "ADE_val_00000001.png: cannot read PNG"),
])
def test_errors_are_metrics_pq_messages(tmp_path, break_it, message):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(4), n_images=3)
    edit(pred_json, lambda document: break_it(tmp_path, document))
    assert pq_hotcoco.dataset_counts(gt_json, pred_json, pairs_of(gt_json, pred_json), ISTHING, tmp_path / "gt",
                                     tmp_path / "pred") is None
    for engine in ("auto", "numpy"):
        with pytest.raises(cp.CocoPanopticError, match=message):
            cp.pq_compute(gt_json, pred_json, engine=engine)


def test_without_hotcoco_auto_counts_with_metrics_pq(tmp_path, monkeypatch):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(5), n_images=4)
    expected = cp.pq_compute(gt_json, pred_json)
    monkeypatch.setattr(pq_hotcoco, "_panoptic", None)
    assert not pq_hotcoco.available()
    assert pq_hotcoco.dataset_counts(gt_json, pred_json, pairs_of(gt_json, pred_json), ISTHING, tmp_path / "gt",
                                     tmp_path / "pred") is None
    assert cp.pq_compute(gt_json, pred_json) == expected


def test_numpy_engine_threads_keep_image_order(tmp_path):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(6), n_images=8)
    one = cp.pq_compute(gt_json, pred_json, per_image=True, engine="numpy", workers=1)
    assert cp.pq_compute(gt_json, pred_json, per_image=True, engine="numpy", workers=3) == one
    assert list(one["per_image"]) == list(range(1, 9))
    # Several broken images: the error is the first one's, as when counting one image after the other.
    for image in (3, 6):
        (tmp_path / "pred" / f"ADE_val_{image:08d}.png").unlink()
    for workers in (1, 3):
        with pytest.raises(cp.CocoPanopticError, match="ADE_val_00000003.png: file not found"):
            cp.pq_compute(gt_json, pred_json, engine="numpy", workers=workers)
    with pytest.raises(ValueError, match="engine must be"):
        cp.pq_compute(gt_json, pred_json, engine="fast")


def test_file_names_stay_inside_their_folder(tmp_path):
    gt_json, pred_json = write_files(tmp_path, np.random.default_rng(7), n_images=2)
    write_png(tmp_path / "outside.png", np.zeros((64, 96), np.int32))
    for name in ("../outside.png", str(tmp_path / "outside.png")):
        edit(pred_json, lambda document, name=name: document["annotations"][1].update(file_name=name))
        for engine in ("auto", "numpy"):
            with pytest.raises(cp.CocoPanopticError, match="In the image with ID 2 file_name .* is not a path inside"):
                cp.pq_compute(gt_json, pred_json, engine=engine)
