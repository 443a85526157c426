"""Panels, error maps, segment matching and the pixel inspector, on hand-made label maps and a generated folder."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from dump.folder import GT
from metrics import pq
from synthetic.folders import make_folder
from viewer.index import load_folder
from viewer.labelmaps import label_map, load_label_map, match_segments
from viewer.panels import (
    ERROR_LEGEND,
    PAIR_LEGEND,
    DisplayOptions,
    build_panels,
    error_codes,
    image_panels,
    inspect_maps,
    legend_classes,
    pair_codes,
    panels_html,
)

COLORS = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200], [90, 90, 0]], dtype=np.uint8)
NAMES = {0: "road", 1: "car", 2: "tree", 3: "sign"}


def typed_maps():
    """10x12. Ground truth: road (1) top left, car (2) top right, car (3) bottom left, tree (4) bottom right, a void
    bottom row. Prediction: road (10) exactly but for one void pixel, a tree (11) exactly on car 2, nothing on car
    3, a small tree (12) on the left third of tree 4, a sign (13) on the void row."""
    gt = np.zeros((10, 12), dtype=np.int32)
    gt[:5, :6], gt[:5, 6:], gt[5:9, :6], gt[5:9, 6:] = 1, 2, 3, 4
    pred = np.zeros_like(gt)
    pred[:5, :6], pred[:5, 6:], pred[5:9, 6:8], pred[9, :] = 10, 11, 12, 13
    pred[0, 0] = 0
    gt_segments = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 1},
                   {"id": 4, "category_id": 2}]
    pred_segments = [{"id": 10, "category_id": 0}, {"id": 11, "category_id": 2}, {"id": 12, "category_id": 2},
                     {"id": 13, "category_id": 3}]
    return label_map(gt, gt_segments), label_map(pred, pred_segments)


def test_error_types_and_their_map_on_a_hand_made_map():
    gt, pred = typed_maps()
    match = match_segments(gt, pred)
    # car 2 and tree 11: right mask, wrong label (linked to each other); car 3: nothing there; tree 4 and 12:
    # IoU 8/24 with each other; the sign lies on void (not counted, so no type).
    assert match.gt_error == {2: ("class", 11), 3: ("missed", 0), 4: ("localization", 12)}
    assert match.pred_error == {11: ("class", 2), 12: ("localization", 4)}
    codes = error_codes(gt, pred, match)
    code = {name.split(" (")[0]: k for k, (name, _) in enumerate(ERROR_LEGEND)}
    expected = np.zeros((10, 12), dtype=int)
    expected[:5, :6] = code["matched"]
    expected[0, 0] = code["other pixel of a matched segment"]  # road's pixel the prediction left void
    expected[:5, 6:] = code["class"]
    expected[5:9, :6] = code["missed"]
    expected[5:9, 6:] = code["localization"]  # the prediction's piece and the rest of the ground-truth tree
    assert codes.tolist() == expected.tolist()  # row 9: ground-truth void, not scored (code 0)
    assert len({color for _, color in ERROR_LEGEND}) == len(ERROR_LEGEND)  # one colour per code


def test_the_inspector_names_error_types():
    gt, pred = typed_maps()
    table = inspect_maps(gt, {"A": pred}, 8, 2, NAMES.get).set_index("source")
    assert table.loc["A", "error type"] == "FP class (↔ ground-truth segment 2); FN class (↔ segment 11)"
    assert table.loc["ground truth", "this segment"] == "FN class for A"
    assert inspect_maps(gt, {"A": pred}, 2, 6, NAMES.get).set_index("source").loc["A", "error type"] == "FN missed"
    assert inspect_maps(gt, {"A": pred}, 2, 2, NAMES.get).set_index("source").loc["A", "error type"] == ""


def test_pair_codes_on_a_hand_made_map():
    gt = np.array([[0, 0, 0, 0, -1]])
    a = np.array([[0, 0, 1, 1, 0]])
    b = np.array([[0, 1, 0, 2, 1]])
    # both right, only A right, only B right, both wrong, not scored
    assert pair_codes(gt, a, b).tolist() == [[1, 2, 3, 4, 0]]


def hand_made_maps():
    """8x8. Ground truth: left half road (segment 1), right half car (segment 2), bottom row void.
    Prediction: left half road (segment 10, a match), right half tree (segment 11: wrong class), plus a sign
    (segment 12) lying on the void row."""
    gt = np.zeros((8, 8), dtype=np.int32)
    gt[:7, :4], gt[:7, 4:] = 1, 2
    pred = np.zeros((8, 8), dtype=np.int32)
    pred[:7, :4], pred[:7, 4:], pred[7, :] = 10, 11, 12
    gt_segments = [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 1, "iscrowd": 0}]
    pred_segments = [{"id": 10, "category_id": 0, "score": 0.9}, {"id": 11, "category_id": 2, "score": 0.8},
                     {"id": 12, "category_id": 3, "score": 0.7}]
    return label_map(gt, gt_segments), label_map(pred, pred_segments)


def test_matching_per_segment():
    gt, pred = hand_made_maps()
    match = match_segments(gt, pred)
    assert match.gt[1][:2] == ("TP", 10) and match.gt[1][2] == pytest.approx(1.0)
    assert match.gt[2] == ("FN", None, None)
    assert match.pred[11] == ("FP", None, None)
    assert match.fp_cover[11] == (1, 28)  # the tree segment lies on the car
    assert match.pred[12] == ("ignored", None, None)  # entirely on ground-truth void: not a false positive


def random_maps(rng, size=(40, 50)):
    """Random blocky ground truth with void and a crowd region, and a shifted, partly relabelled prediction."""
    gt = rng.integers(1, 9, size=(5, 5)).repeat(8, axis=0).repeat(10, axis=1)[: size[0], : size[1]]
    gt[rng.random(size) < 0.05] = 0
    gt_segments = [{"id": int(i), "category_id": int(i % 4), "iscrowd": int(i == 8)} for i in np.unique(gt) if i]
    pred = np.roll(gt, shift=(rng.integers(0, 4), rng.integers(0, 5)), axis=(0, 1)) * 10
    pred[rng.random(size) < 0.03] = 0
    pred_segments = [{"id": int(i), "category_id": int((i // 10 + rng.integers(0, 2)) % 4)} for i in np.unique(pred)
                     if i]
    return gt, gt_segments, pred, pred_segments


def test_matching_adds_up_to_metrics_pq_counts():
    rng = np.random.default_rng(0)
    for _ in range(25):
        gt_map, gt_segments, pred_map, pred_segments = random_maps(rng)
        match = match_segments(label_map(gt_map, gt_segments), label_map(pred_map, pred_segments))
        counts = pq.image_counts(gt_map, gt_segments, pred_map, pred_segments)
        gt_category = {s["id"]: s["category_id"] for s in gt_segments}
        pred_category = {s["id"]: s["category_id"] for s in pred_segments}
        mine: dict[int, list] = {}
        for segment_id, (status, _, iou) in match.gt.items():
            entry = mine.setdefault(gt_category[segment_id], [0, 0, 0, 0.0])
            if status == "TP":
                entry[0] += 1
                entry[3] += iou
            elif status == "FN":
                entry[2] += 1
        for segment_id, (status, _, _) in match.pred.items():
            if status == "FP":
                mine.setdefault(pred_category[segment_id], [0, 0, 0, 0.0])[1] += 1
        for category_id, c in counts.items():
            tp, fp, fn, iou_sum = mine.get(category_id, [0, 0, 0, 0.0])
            assert (tp, fp, fn) == (c.tp, c.fp, c.fn)
            assert iou_sum == pytest.approx(c.iou_sum)


def test_inspector_says_what_matching_made_of_each_segment():
    gt, pred = hand_made_maps()
    left = inspect_maps(gt, {"A": pred}, 1, 1, NAMES.get).set_index("source")
    assert left.loc["ground truth", "class"] == "road" and left.loc["A", "class"] == "road"
    assert left.loc["A", "segment"] == 10 and left.loc["A", "score"] == 0.9
    assert left.loc["A", "this segment"].startswith("TP: IoU 1.000 with ground-truth segment 1")
    assert left.loc["ground truth", "this segment"] == "TP for A"

    right = inspect_maps(gt, {"A": pred}, 6, 2, NAMES.get).set_index("source")
    assert right.loc["A", "class"] == "tree"
    assert right.loc["A", "this segment"] == "FP: unmatched (mostly covers car)"
    assert right.loc["A", "ground-truth segment here"] == "FN"

    bottom = inspect_maps(gt, {"A": pred, "B": "B: no prediction for val_0000"}, 3, 7, NAMES.get)
    bottom = bottom.set_index("source")
    assert bottom.loc["ground truth", "class"] == "void"
    assert bottom.loc["A", "this segment"] == "not counted: mostly on ground-truth void"
    assert bottom.loc["A", "ground-truth segment here"] == "void (not scored)"
    assert bottom.loc["B", "class"] == "B: no prediction for val_0000"

    with pytest.raises(IndexError, match="outside"):
        inspect_maps(gt, {"A": pred}, 8, 0, NAMES.get)


def decoded_images(html: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA"))
            for data in re.findall(r'<img class="vw-(?:fill|edges)" src="data:image/png;base64,([^"]+)"', html)]


def test_panels_are_lossless_pngs_in_the_class_palette():
    gt, pred = hand_made_maps()
    options = DisplayOptions(error_maps=True, pair=("A", "B"))
    panels = build_panels(gt, {"A": pred, "B": gt}, COLORS, options)
    assert [p.title for p in panels] == ["Input", "Ground truth", "A", "B", "A: errors", "B: errors",
                                         "A = A vs B = B"]
    gt, a, errors, pair = (panels[k].fill.rgba() for k in (1, 2, 4, 6))
    assert gt[0, 0].tolist() == [*COLORS[0], 255] and gt[0, 7].tolist() == [*COLORS[1], 255]
    assert gt[7, 0, 3] == 0  # void is transparent: black in label view, the photo in overlay view
    assert a[0, 7].tolist() == [*COLORS[2], 255]
    edges = panels[2].edges.rgba()
    assert edges[:7, 3, 3].all() and not edges[:6, 0, 3].any()  # borders between segments
    assert errors[0, 0, :3].tolist() == list(ERROR_LEGEND[1][1])  # correct
    assert errors[0, 7, :3].tolist() == list(ERROR_LEGEND[2][1])  # wrong class
    assert pair[0, 7, :3].tolist() == list(PAIR_LEGEND[3][1])  # only B right

    html = panels_html(panels, b"\x89PNG fake", [("road", (200, 0, 0))], "val_0000", options)
    pictures = decoded_images(html)
    expected = [layer.rgba() for p in panels for layer in (p.fill, p.edges) if layer is not None]
    assert len(pictures) == len(expected)
    for decoded, original in zip(pictures, expected, strict=True):
        assert np.array_equal(decoded, original)  # PNG, lossless
    assert "Error maps" in html and "A vs B" in html and 'data-image="val_0000"' in html


def test_opacity_mode_and_borders_are_page_styles():
    gt, pred = hand_made_maps()
    panels = build_panels(gt, {"A": pred}, COLORS, DisplayOptions())
    overlay = panels_html(panels, b"png", [], "x", DisplayOptions(mode="overlay", opacity=0.25, borders=False))
    assert 'class="vw-panels vw-overlay"' in overlay and "--vw-opacity:0.250" in overlay
    labels = panels_html(panels, b"png", [], "x", DisplayOptions(mode="labels", borders=True))
    assert 'class="vw-panels vw-borders"' in labels
    assert labels.count("--vw-photo:url('data:image/png;base64,") == 1  # the photo travels once


def test_a_missing_source_gets_a_panel_that_says_why():
    gt, pred = hand_made_maps()
    panels = build_panels(gt, {"A": pred, "B": "B: no prediction for val_0003"}, COLORS,
                          DisplayOptions(error_maps=True))
    assert [p.title for p in panels] == ["Input", "Ground truth", "A", "B", "A: errors"]
    html = panels_html(panels, None, [], "val_0003", DisplayOptions(), size=(8, 8))
    assert "B: no prediction for val_0003" in html


def test_one_colour_per_class_in_every_panel_image_and_the_legend(tmp_path):
    index = load_folder(make_folder(tmp_path / "out", n_images=4, models=("alpha", "beta"), seed=2))
    manifest_colors = {c["id"]: tuple(c["color"]) for c in index.manifest["classes"]}
    seen: dict[int, set] = {}
    for pos in range(index.n_images):
        panels, _ = image_panels(index, pos, index.models, DisplayOptions())
        for panel, source in zip(panels[1:], [GT, *index.models], strict=True):
            labels = index.segments(source, pos)
            class_map = load_label_map(index, pos, source).class_map
            for class_id in {s["category_id"] for s in labels}:
                colours = {tuple(v) for v in panel.fill.rgba()[class_map == class_id][:, :3].tolist()}
                seen.setdefault(class_id, set()).update(colours)
        for name, colour in legend_classes(index, pos, index.models):
            class_id = next(c for c, n in index.classes.names.items() if n == name)
            assert tuple(int(v) for v in colour) == manifest_colors[class_id]
    assert len(seen) > 5
    for class_id, colours in seen.items():
        assert colours == {manifest_colors[class_id]}


def test_inspector_reports_a_pair_that_cannot_be_matched():
    gt, pred = hand_made_maps()
    # A prediction whose segment list lacks one of the ids in its PNG: panopticapi refuses such a pair.
    broken = label_map(pred.segment_map, [s for s in pred.segments.values() if s["id"] != 11])
    table = inspect_maps(gt, {"A": pred, "bad": broken}, 1, 1, NAMES.get).set_index("source")
    assert table.loc["A", "this segment"].startswith("TP")
    assert "cannot match" in table.loc["bad", "this segment"] and "11" in table.loc["bad", "this segment"]
