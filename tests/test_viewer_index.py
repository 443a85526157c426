"""Opening an output folder: the index's numbers equal the folder's own metrics, and broken folders still open."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dump.folder import GT, INSTANCE_COUNTS, SEGMENT_STATS, FolderError
from metrics import pq
from metrics.coco_panoptic import read_png
from synthetic.folders import MODELS, break_folder, make_folder
from viewer import tables
from viewer.index import check_annotations, load_folder, per_image_metrics, summary_markdown
from viewer.labelmaps import LabelMapError, load_label_map
from viewer.panels import DisplayOptions, image_panels


def saved(folder) -> dict:
    return json.loads((folder / INSTANCE_COUNTS).read_text())


def test_opens_a_complete_folder_without_problems(index):
    assert index.n_images == 10
    assert index.models == list(MODELS)
    assert index.problems == []
    assert "nothing missing" in summary_markdown(index)
    assert all(index.covered[m].all() for m in MODELS)


def test_per_image_metrics_equal_the_folders_metrics(folder, index):
    per_image = saved(folder)["pq"]
    checked = 0
    for model in MODELS:
        for pos, image in enumerate(index.images):
            entry = per_image[f"{image}_pq_pred_{model}"]
            row = index.image_metrics[model].loc[pos]
            for metric in ("pq", "sq", "rq"):
                assert row[metric] == pytest.approx(entry[f"overall_{metric}"], rel=1e-12, abs=1e-15)
            assert (row["tp"], row["fp"], row["fn"]) == (entry["tp"], entry["fp"], entry["fn"])
            assert row["classes"] == len(entry["per_class_pq"])
            checked += 1
    assert checked == index.n_images * len(MODELS)


def test_per_image_pq_is_the_mean_over_active_classes_not_pooled_counts():
    # Class 1: one match at IoU 0.9 (PQ 0.9); class 2: three stray segments (PQ 0). Pooling the counts would give
    # 0.9 / (1 + 1.5) = 0.36; panopticapi's per-image PQ is the mean over the two active classes, 0.45.
    stats = pd.DataFrame({"image": ["val_0000"] * 3, "model": ["m"] * 3, "category_id": [1, 2, 3], "tp": [1, 0, 0],
                          "fp": [0, 3, 0], "fn": [0, 0, 0], "iou_sum": [0.9, 0.0, 0.0], "gt_segments": [1, 0, 0],
                          "pred_segments": [1, 3, 0], "pos": [0, 0, 0]})
    row = per_image_metrics(stats, 2, "m")
    assert row.loc[0, "pq"] == pytest.approx(0.45)
    assert row.loc[0, "sq"] == pytest.approx(0.45)  # (0.9 + 0) / 2: SQ of a class without TP is 0
    assert row.loc[0, "classes"] == 2  # class 3 has no activity: not counted
    assert np.isnan(row.loc[1, "pq"])  # no active class: undefined, not 0


def test_instance_counts_equal_the_folders_instance_counts(folder, index):
    counts = saved(folder)["instance_counts"]
    for source in (GT, *MODELS):
        for pos, image in enumerate(index.images):
            label = f"{image}_target" if source == GT else f"{image}_pred_{source}"
            expected = {name: n for name, n in counts[label].items()}
            got = {index.classes.names[c["id"]]: int(index.instance_counts[source][pos, index.classes.column[c["id"]]])
                   for c in index.classes.entries() if index.instance_counts[source][pos, index.classes.column[c["id"]]]}
            assert got == expected


def test_counts_of_segment_stats_equal_counts_from_the_pngs(index):
    for model in MODELS:
        for pos, image in enumerate(index.images):
            from_file = index.stored_counts(pos, model)
            fresh = pq.image_counts(read_png(index.layout.panoptic_png(image, GT)), index.segments(GT, pos),
                                    read_png(index.layout.panoptic_png(image, model)), index.segments(model, pos))
            assert from_file.keys() == fresh.keys()
            for category_id, c in fresh.items():
                mine = from_file[category_id]
                assert (mine.tp, mine.fp, mine.fn, mine.gt_segments, mine.pred_segments) == \
                    (c.tp, c.fp, c.fn, c.gt_segments, c.pred_segments)
                assert mine.iou_sum == pytest.approx(c.iou_sum, rel=1e-15)


def test_images_are_found_by_index_name_and_key(index):
    assert index.position("3") == 3
    assert index.position("val_0005") == 5
    assert index.position("synthetic_00000006") == 6
    assert index.position("val_9999") is None
    assert index.position("../manifest.json") is None


def test_a_broken_folder_opens_and_says_what_is_missing(tmp_path):
    folder = make_folder(tmp_path / "out", n_images=6, models=MODELS, seed=5)
    broken = break_folder(folder)
    index = load_folder(folder)
    text = "\n".join(index.problems)

    image, model = broken["missing_prediction"]
    assert f"without a prediction of {model}: {image}" in text
    pos = index.images.index(image)
    assert not index.has(model, pos)
    assert any("no prediction" in note for note in index.image_notes(pos))

    # A malformed annotation is found by the background check, and when its image is shown.
    image, model = broken["malformed_json"]
    pos = index.images.index(image)
    with pytest.raises(LabelMapError, match="not a readable JSON file"):
        load_label_map(index, pos, model)
    assert check_annotations(index) == 1
    assert f"model {model}: unreadable annotation JSON for 1 images: {image}" in index.problems[-1]
    assert any("not a readable JSON file" in note for note in index.image_notes(pos))

    image = broken["no_ground_truth"]
    assert f"1 of 6 images without ground truth: {image}" in text
    pos = index.images.index(image)
    metrics = tables.image_metrics_table(index, pos, list(MODELS))
    assert set(metrics["source"]) == {"no ground truth"}
    assert metrics["PQ"].isna().all()

    # A truncated PNG is found when the image is shown: its panel says why, the others are drawn.
    image, model = broken["truncated_png"]
    pos = index.images.index(image)
    with pytest.raises(LabelMapError, match="cannot read PNG"):
        load_label_map(index, pos, model)
    panels, photo = image_panels(index, pos, list(MODELS), DisplayOptions(error_maps=True))
    by_title = {p.title: p for p in panels}
    assert by_title[model].fill is None and "cannot read PNG" in by_title[model].note
    assert by_title["Ground truth"].fill is not None and photo is not None
    assert f"{MODELS[1]}: errors" in by_title and f"{model}: errors" not in by_title


def test_without_segment_stats_the_image_on_screen_still_gets_its_metrics(tmp_path):
    folder = make_folder(tmp_path / "out", n_images=3, models=MODELS[:2], seed=7)
    per_image = saved(folder)["pq"]
    (folder / SEGMENT_STATS).unlink()
    index = load_folder(folder)
    assert any(SEGMENT_STATS in p and "missing" in p for p in index.problems)
    assert index.image_metrics[MODELS[0]]["pq"].isna().all()
    metrics = tables.image_metrics_table(index, 1, list(MODELS[:2]))
    assert set(metrics["source"]) == {"computed from the PNGs"}
    for _, row in metrics.iterrows():
        assert row["PQ"] == pytest.approx(per_image[f"{index.images[1]}_pq_pred_{row['model']}"]["overall_pq"])


def test_a_stale_or_malformed_segment_stats_is_reported(tmp_path):
    folder = make_folder(tmp_path / "out", n_images=4, models=MODELS[:2], seed=9)
    stats = pd.read_csv(folder / SEGMENT_STATS)
    stats[stats["image"] != "val_0002"].to_csv(folder / SEGMENT_STATS, index=False)
    index = load_folder(folder)
    assert any("lacks 1 images of alpha" in p and "val_0002" in p for p in index.problems)
    assert not index.covered["alpha"][2] and index.covered["alpha"][1]
    assert tables.pair_counts(index, 2, "alpha")[1] == "computed from the PNGs"

    (folder / SEGMENT_STATS).write_text("image,model\nval_0000")
    index = load_folder(folder)
    assert any(SEGMENT_STATS in p and "not readable" in p for p in index.problems)


def test_an_unusable_manifest_is_an_error_that_names_the_file(tmp_path):
    with pytest.raises(FolderError, match="manifest.json: file not found"):
        load_folder(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(FolderError, match="not a readable JSON file"):
        load_folder(tmp_path)
