"""COCO panoptic format: id <-> RGB, PNG and JSON reading, bounding boxes, pq_compute on files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from metrics import coco_panoptic as cp
from metrics import pq

CATEGORIES = [{"id": 0, "name": "wall", "isthing": 0, "color": [120, 120, 120]},
              {"id": 2, "name": "sky", "isthing": 0, "color": [6, 230, 230]},
              {"id": 7, "name": "bed", "isthing": 1, "color": [204, 5, 255]},
              {"id": 12, "name": "person", "isthing": 1, "color": [150, 5, 61]}]


def write_png(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cp.id2rgb(ids)).save(path)


def segment(segment_id, category_id, segment_map, iscrowd=0):
    areas, bboxes = cp.areas_and_bboxes(segment_map, [segment_id])
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd, "area": areas[0], "bbox": bboxes[0]}


def write_dataset(root):
    """gt/ + gt.json and pred/ + pred.json of three 6x8 images with hand-computable results:
    1: wall + bed, predicted perfectly; 2: a bed predicted with IoU 0.75 plus a false-positive person;
    3: all void in both (no active category). Returns the two JSON paths."""
    gt1 = np.zeros((6, 8), np.int32)
    gt1[:3], gt1[3:, 2:6] = 1, 2
    gt2 = np.zeros((6, 8), np.int32)
    gt2[1:5, 1:5] = 300  # an id above 255 uses the G channel
    pred2 = np.zeros((6, 8), np.int32)
    pred2[1:4, 1:5] = 5  # 12 of the 16 gt pixels
    pred2[4, 1:5] = 6  # the other 4, predicted as a person
    empty = np.zeros((6, 8), np.int32)
    images = [
        (1, gt1, [segment(1, 0, gt1), segment(2, 7, gt1)], gt1, [segment(1, 0, gt1), segment(2, 7, gt1)]),
        (2, gt2, [segment(300, 7, gt2)], pred2, [segment(5, 7, pred2), segment(6, 12, pred2)]),
        (3, empty, [], empty, []),
    ]
    paths = {}
    for which in ("gt", "pred"):
        annotations = []
        for image_id, gt_map, gt_segments, pred_map, pred_segments in images:
            name = f"ADE_val_{image_id:08d}.png"
            segment_map, segments = (gt_map, gt_segments) if which == "gt" else (pred_map, pred_segments)
            write_png(root / which / name, segment_map)
            annotations.append({"image_id": image_id, "file_name": name, "segments_info": segments})
        paths[which] = root / f"{which}.json"
        paths[which].write_text(json.dumps({
            "images": [{"id": i, "file_name": f"ADE_val_{i:08d}.jpg", "width": 8, "height": 6} for i in (1, 2, 3)],
            "annotations": annotations, "categories": CATEGORIES}))
    return paths["gt"], paths["pred"]


EXPECTED = {
    "All": {"pq": (1.0 + 0.875 + 0.0) / 3, "sq": (1.0 + 0.875 + 0.0) / 3, "rq": (1.0 + 1.0 + 0.0) / 3, "n": 3},
    "Things": {"pq": 0.875 / 2, "sq": 0.875 / 2, "rq": 1.0 / 2, "n": 2},
    "Stuff": {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1},
    "per_class": {0: {"pq": 1.0, "sq": 1.0, "rq": 1.0}, 7: {"pq": 0.875, "sq": 0.875, "rq": 1.0},
                  12: {"pq": 0.0, "sq": 0.0, "rq": 0.0}},
}
EXPECTED_PER_IMAGE = {1: {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2},
                      2: {"pq": 0.375, "sq": 0.375, "rq": 0.5, "n": 2}, 3: None}


def test_id_rgb_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 123456, cp.MAX_ID]])
    rgb = cp.id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    assert rgb[1, 2].tolist() == [123456 % 256, 123456 // 256 % 256, 123456 // 65536]
    assert cp.rgb2id(rgb).dtype == np.int32 and (cp.rgb2id(rgb) == ids).all()
    assert cp.id2rgb(256 + 3) == (3, 1, 0)
    for bad in (-1, cp.MAX_ID + 1):
        with pytest.raises(ValueError, match="RGB"):
            cp.id2rgb(bad)
    with pytest.raises(ValueError, match="0..16777215"):
        cp.id2rgb(np.array([cp.MAX_ID + 1]))


def test_png_round_trip_and_errors_name_the_file(tmp_path):
    ids = np.random.default_rng(0).integers(0, cp.MAX_ID, size=(5, 7))
    write_png(tmp_path / "a.png", ids)
    assert (cp.read_png(tmp_path / "a.png") == ids).all()
    with pytest.raises(cp.CocoPanopticError, match="b.png: file not found"):
        cp.read_png(tmp_path / "b.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(cp.CocoPanopticError, match="gray.png: a panoptic PNG must be RGB, this one is mode L"):
        cp.read_png(tmp_path / "gray.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(cp.CocoPanopticError, match="junk.png: cannot read PNG"):
        cp.read_png(tmp_path / "junk.png")


def test_read_png_drops_alpha_and_expands_palettes(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, cp.MAX_ID, size=(6, 9))
    rgba = np.concatenate([cp.id2rgb(ids), rng.integers(0, 256, size=(6, 9, 1), dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert (cp.read_png(tmp_path / "rgba.png") == ids).all()
    palette = [tuple(c) for c in cp.id2rgb(np.array([0, 70000, 5, cp.MAX_ID])).tolist()]
    indices = rng.integers(0, 4, size=(5, 3)).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([v for c in palette for v in c])
    image.save(tmp_path / "palette.png")
    read = cp.read_png(tmp_path / "palette.png")
    assert read.dtype == np.int32 and read.shape == (5, 3)
    assert (read == np.array([0, 70000, 5, cp.MAX_ID])[indices]).all()
    whole = (tmp_path / "rgba.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(cp.CocoPanopticError, match="cut.png: cannot read PNG"):
        cp.read_png(tmp_path / "cut.png")


def test_read_json_keeps_the_document(tmp_path):
    document = {"annotations": [{"image_id": 1, "file_name": "x.png", "segments_info": [
        {"id": 3, "category_id": 7, "iscrowd": 0, "area": 4, "bbox": [1, 2, 3, 4]}]}], "categories": CATEGORIES,
        "images": [{"id": 1, "file_name": "x.jpg"}]}
    (tmp_path / "p.json").write_text(json.dumps(document))
    assert cp.read_json(tmp_path / "p.json") == document


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{", "not a readable JSON file"),
    ('{"categories": []}', "a COCO panoptic JSON needs an 'annotations' list"),
    ('{"annotations": [{"image_id": 1}]}', "every annotation needs 'image_id', 'file_name' and 'segments_info'"),
])
def test_read_json_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(cp.CocoPanopticError, match=f"bad.json: {message}"):
        cp.read_json(path)


@pytest.mark.parametrize("offset", [0, 100_000])  # small ids (lookup) and large ones (np.unique path)
def test_areas_and_bboxes_match_masks(offset):
    rng = np.random.default_rng(5)
    segment_map = np.kron(rng.integers(0, 6, size=(5, 7)), np.ones((3, 2), dtype=np.int64))
    segment_map[0, 0] = 9  # a one-pixel segment
    segment_map = np.where(segment_map > 0, segment_map + offset, 0)
    ids = [*range(offset + 1, offset + 6), offset + 9, offset + 42]  # the last is absent
    areas, bboxes = cp.areas_and_bboxes(segment_map, ids)
    for segment_id, area, bbox in zip(ids, areas, bboxes, strict=True):
        ys, xs = np.nonzero(segment_map == segment_id)
        assert area == len(ys)
        expected = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] if len(ys) else [0] * 4
        assert bbox == expected and all(type(v) is int for v in [area, *bbox])
    assert bboxes[ids.index(offset + 9)] == [0, 0, 1, 1]


def test_pq_compute_on_files(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    assert cp.default_folder(gt_json) == tmp_path / "gt"
    result = cp.pq_compute(gt_json, pred_json, per_image=True)
    assert result["per_image"] == EXPECTED_PER_IMAGE
    assert {k: v for k, v in result.items() if k != "per_image"} == EXPECTED
    assert "per_image" not in cp.pq_compute(gt_json, pred_json, tmp_path / "gt", tmp_path / "pred")


def test_pq_compute_uses_the_ground_truth_json_areas(tmp_path):
    # As panopticapi: a JSON whose stuff area was recorded before things were painted over it (Mask2Former's
    # JSON) makes a perfect prediction score below 1.
    gt_json, pred_json = write_dataset(tmp_path)
    document = json.loads(gt_json.read_text())
    document["annotations"][0]["segments_info"][0]["area"] += 4  # the wall "under" the bed's pixels
    gt_json.write_text(json.dumps(document))
    wall = cp.pq_compute(gt_json, pred_json)["per_class"][0]
    assert wall["sq"] == 24 / 28 and wall["pq"] == 24 / 28


def test_pq_compute_matches_image_counts(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    gt, pred = cp.read_json(gt_json), cp.read_json(pred_json)
    per_image = [pq.image_counts(cp.read_png(tmp_path / "gt" / g["file_name"]), g["segments_info"],
                                 cp.read_png(tmp_path / "pred" / p["file_name"]), p["segments_info"])
                 for g, p in zip(gt["annotations"], pred["annotations"], strict=True)]
    summary = pq.pq_summary(pq.sum_counts(per_image), {c["id"]: bool(c["isthing"]) for c in CATEGORIES})
    assert summary["All"] == cp.pq_compute(gt_json, pred_json)["All"]
