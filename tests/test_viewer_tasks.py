"""The app's logic on a folder of models of every task (a panoptic, a semantic and an instance model dumped over toy
scenes): what it reads and computes equals metrics.semantic on the folder's maps and the dump's own records, and a
folder written before tasks existed still opens."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import predict_dump
from dump import demo
from dump.folder import GT
from metrics import semantic as semantic_metrics
from segdata import scenes
from viewer import dataset, events, filters, live, plots, tables, task_maps
from viewer.filters import ImageFilter, filter_images
from viewer.index import load_folder
from viewer.labelmaps import LabelMap

N_IMAGES = 3
MODELS = ["--model", f"pan={demo.DEMO_MODELS['toy-small']}", "--model", f"sem={demo.DEMO_SEMANTIC['toy-semantic']}",
          "--model", f"ins={demo.DEMO_MODELS['toy-base']}@instance"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("viewer_tasks")
    data = scenes.write_scenes(base / "scenes", num_train=0, num_val=N_IMAGES, seed=7)
    assert predict_dump.main(["--data", str(data), *MODELS, "--out", str(base / "out"), "--workers", "0"]) == 0
    return base / "out"


@pytest.fixture(scope="module")
def index(folder):
    return load_folder(folder)


def semantic_png(folder, source: str, pos: int) -> np.ndarray:
    return np.asarray(Image.open(folder / "semantic" / source / f"val_{pos:04d}.png"))


def pan_semantic(index, pos: int) -> np.ndarray:
    return semantic_metrics.semantic_from_class_map(task_maps.load_label_map(index, pos, "pan").class_map)


def test_opens_with_every_task(index):
    assert index.problems == []
    assert index.model_tasks == {"pan": "panoptic", "sem": "semantic", "ins": "instance"}
    assert all(index.truth[task].all() for task in ("panoptic", "semantic", "instance"))
    assert all(index.available[m].all() for m in index.models)


def test_per_image_task_numbers_equal_metrics_on_the_maps(folder, index):
    for pos in range(N_IMAGES):
        gt = semantic_png(folder, GT, pos)
        for model, pred in (("sem", semantic_png(folder, "sem", pos)), ("pan", pan_semantic(index, pos))):
            counts = semantic_metrics.image_counts(gt, pred, 150)
            assert index.image_metrics[model].loc[pos, "miou"] == pytest.approx(counts.miou(), rel=1e-12)
        record = json.loads((folder / "instance" / "ins" / f"val_{pos:04d}.json").read_text())["counts"]
        tp, fp, fn = (sum(v[k] for v in record["0.5"].values()) for k in range(3))
        row = index.image_metrics["ins"].loc[pos]
        assert (row["tp50"], row["fp50"], row["fn50"]) == (tp, fp, fn)
        assert row["r50"] == pytest.approx(tp / (tp + fn))
        for key, column in (("0.5", "ap50"), ("0.75", "ap75")):  # the mean of the image's classes' own APs
            aps = [v[3] for v in record[key].values() if v[3] is not None]
            assert row[column] == pytest.approx(np.mean(aps), rel=1e-12)
    assert np.isnan(index.image_metrics["sem"]["pq"]).all() and np.isnan(index.image_metrics["ins"]["miou"]).all()


def test_class_filters_work_on_every_task(folder, index):
    def predicted(pos):  # the classes a semantic map predicts on labelled pixels (what semantic_stats.csv counts)
        return set(np.unique(semantic_png(folder, "sem", pos)[semantic_png(folder, GT, pos) != 255]).tolist())

    for pos in range(N_IMAGES):
        assert set(np.flatnonzero(index.instance_counts["sem"][pos]).tolist()) == predicted(pos) - {255}
    chair = 19
    expected = [p for p in range(N_IMAGES) if chair in predicted(p)]
    assert filter_images(index, ImageFilter(classes=(chair,), source="sem")).tolist() == expected
    shown = [p for p in range(N_IMAGES) if any(
        i["category_id"] == chair and i["score"] >= 0.5 for i in task_maps.instances(index, p, "ins")[1])]
    assert filter_images(index, ImageFilter(classes=(chair,), source="ins")).tolist() == shown


def test_dataset_numbers_equal_the_folders_task_metrics(folder, index):
    metrics = json.loads((folder / "task_metrics.json").read_text())["models"]
    per_class = dataset.task_class_metrics(index, index.models)
    for model in ("pan", "sem"):
        mine = per_class[per_class["model"] == model].set_index("class id")
        for class_id, values in metrics[model]["semantic"]["per_class"].items():
            assert mine.loc[int(class_id), "IoU"] == pytest.approx(values["iou"], rel=1e-12)
        assert set(mine["IoU from"].dropna()) == {metrics[model]["semantic"]["source_task"]}
        matrix = np.array(json.loads((folder / "semantic" / f"{model}.json").read_text())["matrix"])
        assert np.array_equal(dataset.confusion_matrix(index, model), matrix)
    for model in ("pan", "ins"):
        mine = per_class[(per_class["model"] == model) & per_class["AP"].notna()].set_index("class id")
        expected = {int(c): ap for c, ap in metrics[model]["instance"]["per_class"].items() if ap is not None}
        assert mine["AP"].to_dict() == pytest.approx(expected, rel=1e-12)
    summary = dataset.task_summary(index, index.models).set_index("model")
    assert summary.loc["sem", "mIoU"] == pytest.approx(metrics["sem"]["semantic"]["miou"], rel=1e-12)
    assert summary.loc["pan", "mIoU from"] == "panoptic" and summary.loc["ins", "AP"] == metrics["ins"]["instance"]["ap"]
    # Over a list of images: mIoU from the counts of those images alone.
    first_two = dataset.task_summary(index, ["sem"], positions=[0, 1]).set_index("model")
    total = semantic_metrics.sum_counts([semantic_metrics.image_counts(semantic_png(folder, GT, p),
                                                                       semantic_png(folder, "sem", p), 150)
                                         for p in (0, 1)], 150)
    assert first_two.loc["sem", "mIoU"] == pytest.approx(total.miou(), rel=1e-12)


def test_confusions_and_their_images(folder, index):
    matrix = dataset.confusion_matrix(index, "sem")
    off = matrix.copy()
    off[np.arange(150), np.arange(150)] = 0
    top = dataset.top_confusions(index, "sem")
    gt_class, predicted = np.unravel_index(off.argmax(), off.shape)
    assert (top["gt id"].iloc[0], top["predicted id"].iloc[0] % 151, top["pixels"].iloc[0]) == \
        (gt_class, predicted, off.max())
    images = dataset.confusion_images(index, "sem", int(gt_class), int(top["predicted id"].iloc[0]))
    counted = {}
    for pos in range(N_IMAGES):
        gt, pred = semantic_png(folder, GT, pos), semantic_png(folder, "sem", pos)
        pixels = int(((gt == gt_class) & (pred == (predicted if predicted < 150 else 255))).sum())
        if pixels:
            counted[index.images[pos]] = pixels
    assert dict(zip(images["image"], images["pixels"], strict=True)) == counted
    assert list(images["pixels"]) == sorted(counted.values(), reverse=True)
    picture, grid = plots.confusion_heatmap(matrix, index.classes.names, "sem", max_classes=8)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert len(grid.rows) == 8 and grid.columns == (*grid.rows, 150)


def test_a_click_on_the_heatmap_names_its_cell(index):
    """The grid's box is where the cells are drawn: a point inside each cell has the colour of its share, and a
    click there picks that confusion (the last column: no class); the diagonal and the margins pick nothing."""
    import matplotlib

    page = events.confusion_page(index, {"positions": None}, "sem", "all", 6)
    matrix = dataset.confusion_matrix(index, "sem")
    grid = page.grid
    left, top, right, bottom = grid.box
    width, height = (right - left) / len(grid.columns), (bottom - top) / len(grid.rows)
    colours = matplotlib.colormaps["rocket_r"]
    for r, gt_class in enumerate(grid.rows):
        for c, column in enumerate(grid.columns):
            share = matrix[gt_class, column] / matrix[gt_class].sum()
            expected = np.array(colours(share)[:3]) * 255
            for near in (0.12, 0.88):  # both corners of the cell, off the centred annotation
                x, y = left + (c + near) * width, top + (r + near) * height
                assert np.abs(page.chart[int(y), int(x)].astype(float) - expected).max() <= 3, (r, c, near)
            if column == gt_class:
                with pytest.raises(events.UserError, match="off the diagonal"):
                    events.heatmap_choice(index, grid, x, y)
            else:
                predicted = -1 if column == 150 else column
                assert events.heatmap_choice(index, grid, x, y) == f"{gt_class}:{predicted}"
    for x, y in ((left - 2, top + 2), (right + 2, top + 2), (left + 2, bottom + 2), (left + 2, top - 2)):
        with pytest.raises(events.UserError, match="Click a cell"):
            events.heatmap_choice(index, grid, x, y)


def test_error_maps_per_task(folder, index):
    pos = 1
    gt, pred = semantic_png(folder, GT, pos), semantic_png(folder, "sem", pos)
    codes = task_maps.semantic_codes(gt, pred)
    assert np.array_equal(codes == 1, (gt == pred) & (gt != 255))
    assert np.array_equal(codes == 0, gt == 255)
    assert (codes == 2).any()
    # Every instance shown, scored or not: the matching tallies are the dump's TP/FP/FN at IoU 0.5 and 0.75.
    stats = index.instance_stats[(index.instance_stats["model"] == "ins") & (index.instance_stats["pos"] == pos)]
    for iou, suffix in ((0.5, "50"), (0.75, "75")):
        shown, truths = task_maps.instance_matches(index, pos, "ins", iou, 0.0)
        statuses = [s for _, s in shown]
        assert statuses.count("TP") == stats[f"tp{suffix}"].sum() and statuses.count("FP") == stats[f"fp{suffix}"].sum()
        assert [s for _, s in truths].count("FN") == stats[f"fn{suffix}"].sum()
    codes = task_maps.instance_codes(index, pos, "ins", 0.5, 0.5)
    shown, truths = task_maps.instance_matches(index, pos, "ins", 0.5, 0.5)
    tp = [instance["mask"] for instance, status in shown if status == "TP"]
    assert tp and (codes[tp[0]] == 1).any()  # the best TP is drawn as a TP
    assert all(instance["score"] >= 0.5 for instance, _ in shown)
    shown = events.display(index, index.models, "labels", 0.6, True, True, False, None, None, 0.5, 0.5)
    page = events.show_image(index, events.navigation.new_view(range(N_IMAGES), current=pos), shown)
    for title in ("sem (semantic)", "ins (instance)", "sem: errors (semantic)", "ins: errors (instance, IoU 0.5)",
                  "pan: errors"):
        assert f"<figcaption>{title}</figcaption>" in page.panels


def test_score_slider_leaves_out_lower_scored_instances(index):
    everything = task_maps.prediction_labels(index, 0, "ins", 0.0)
    confident = task_maps.prediction_labels(index, 0, "ins", 0.9)
    assert isinstance(everything, LabelMap) and isinstance(confident, LabelMap)
    assert all(s["score"] >= 0.9 for s in confident.segments.values())
    assert len(confident.segments) < len(everything.segments)
    scores = [s["score"] for s in everything.segments.values()]
    assert scores == sorted(scores, reverse=True)  # ids from the best: the best is painted on top


def test_tables_and_rankings_say_which_task_a_number_comes_from(index):
    table = tables.image_metrics_table(index, 0, index.models).set_index("model")
    assert table.loc["pan", "numbers from"].startswith("panoptic segments; mIoU: its class map")
    assert table.loc["sem", "mIoU"] == pytest.approx(index.image_metrics["sem"].loc[0, "miou"])
    assert np.isnan(table.loc["sem", "PQ"]) and table.loc["ins", "TP@0.5"] == index.image_metrics["ins"].loc[0, "tp50"]
    assert table.loc["ins", "AP@0.5"] == index.image_metrics["ins"].loc[0, "ap50"]
    per_class = tables.image_class_table(index, 0, ["ins"]).dropna(subset=["AP@0.5"]).set_index("class id")
    record = json.loads((index.layout.root / "instance" / "ins" / "val_0000.json").read_text())["counts"]["0.5"]
    assert len(per_class) and per_class["AP@0.5"].to_dict() == {int(c): v[3] for c, v in record.items()
                                                                 if v[3] is not None}
    pairs = tables.pairwise_table(tables.image_metrics_table(index, 0, index.models)).set_index(["A", "B"])
    assert pairs.loc[("pan", "sem"), "ΔmIoU A−B"] == pytest.approx(
        index.image_metrics["pan"].loc[0, "miou"] - index.image_metrics["sem"].loc[0, "miou"])
    assert filters.ranking_metric(index, "pan", "sem", "auto") == "miou"
    assert filters.ranking_metric(index, "pan", "ins", "auto") == "ap50"
    ranked = filters.rank_images(index, np.arange(N_IMAGES), "ins", "pan", metric="auto", order="largest")
    expected = index.image_metrics["ins"]["ap50"] - index.image_metrics["pan"]["ap50"]
    assert ranked.table["ΔAP@0.5 A−B"].to_numpy() == pytest.approx(expected.to_numpy()[ranked.positions])
    assert list(np.abs(ranked.table["ΔAP@0.5 A−B"])) == sorted(np.abs(expected.dropna()), reverse=True)
    with pytest.raises(ValueError, match="share no per-image metric"):
        filters.ranking_metric(index, "sem", "ins", "auto")
    with pytest.raises(ValueError, match="sem is a semantic model: it has no PQ"):
        filters.ranking_metric(index, "pan", "sem", "pq")
    ranked = filters.rank_images(index, np.arange(N_IMAGES), "pan", "sem", metric="auto")
    delta = ranked.table["ΔmIoU A−B"].to_numpy()
    assert list(delta) == sorted(delta, reverse=True)
    listing = tables.image_list_table(index, np.arange(N_IMAGES), index.models)
    assert {"PQ pan", "mIoU pan", "mIoU sem", "AP@0.5 ins", "AP@0.5 pan", "R@0.5 ins", "R@0.5 pan"} <= \
        set(listing.columns)
    assert "mIoU ins" not in listing.columns and "PQ sem" not in listing.columns


def test_dataset_page_compares_iou_and_ap_across_tasks(index):
    view = events.navigation.new_view(range(N_IMAGES))
    page = events.dataset_page(index, view, events.DatasetQuery(index.models, "IoU", model_a="pan", model_b="sem"))
    table = page.table.data
    assert "ΔIoU pan−sem" in table and "a panoptic model's IoU comes from its class map" in page.status
    delta = table["ΔIoU pan−sem"].dropna().to_numpy()
    assert list(delta) == sorted(delta, reverse=True)
    page = events.dataset_page(index, view, events.DatasetQuery(index.models, "AP", model_a="pan", model_b="ins"))
    assert "ΔAP pan−ins" in page.table.data and page.summary["AP from"].fillna("").tolist() == ["panoptic", "", "instance"]


def test_live_runs_each_model_on_its_task(index):
    photo = np.asarray(Image.open(index.layout.input_png("val_0000")))
    result = live.run_models(index, ["sem", "ins"], photo)
    assert all(isinstance(labels, LabelMap) for labels in result.labels.values())
    np.testing.assert_array_equal(result.labels["sem"].class_map,
                                  np.where(semantic_png(index.root, "sem", 0) == 255, -1,
                                           semantic_png(index.root, "sem", 0)))
    assert all(s["score"] >= 0.5 for s in result.labels["ins"].segments.values())


def test_a_folder_written_before_tasks_opens(folder, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(folder, old)
    for name in ("semantic", "instance"):
        shutil.rmtree(old / name)
    for name in ("semantic_stats.csv", "semantic_confusion.csv", "instance_stats.csv", "task_metrics.json"):
        (old / name).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["models"] = [{k: v for k, v in m.items() if k not in ("task", "backbone_weights")}
                          for m in manifest["models"] if m["name"] == "pan"]
    manifest["dataset"].pop("ground_truth_tasks")
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    index = load_folder(old)
    assert index.problems == [] and index.model_tasks == {"pan": "panoptic"}
    shown = events.display(index, ["pan"], "labels", 0.6, True, True, False, None, None)
    page, listing = events.open_page(index, None, shown)
    assert "pan: errors" in page.panels and "mIoU pan" not in listing.table
    assert dataset.task_summary(index, ["pan"])["mIoU"].isna().all()


def test_instance_stats_written_before_per_image_aps_open(folder, index, tmp_path):
    """instance_stats.csv without the ap50 / ap75 columns and records with three numbers per class: the folder
    opens without a problem, AP@0.5 is NaN, "auto" ranks by R@0.5 instead, and --reindex adds the APs (the same as
    a new dump's), rewriting the records."""
    old = tmp_path / "before_ap"
    shutil.copytree(folder, old)
    stats = (old / "instance_stats.csv").read_text().splitlines()
    assert stats[0].endswith(",ap50,ap75")
    (old / "instance_stats.csv").write_text("".join(",".join(line.split(",")[:-2]) + "\n" for line in stats))
    for path in (old / "instance").glob("*/val_*.json"):
        record = json.loads(path.read_text())
        if record.get("counts"):  # a model's record (the ground truth's hold annotations)
            record["counts"] = {k: {c: v[:3] for c, v in by_class.items()} for k, by_class in record["counts"].items()}
            path.write_text(json.dumps(record))
    before = load_folder(old)
    assert before.problems == []
    assert before.image_metrics["ins"]["ap50"].isna().all()
    assert before.image_metrics["ins"]["r50"].equals(index.image_metrics["ins"]["r50"])
    assert filters.ranking_metric(before, "pan", "ins", "auto") == "r50"
    assert filters.ranking_metric(index, "pan", "ins", "auto") == "ap50"

    assert predict_dump.main(["--out", str(old), "--reindex"]) == 0
    after = load_folder(old)
    for model in ("pan", "ins"):
        assert after.image_metrics[model]["ap50"].equals(index.image_metrics[model]["ap50"]), model
    record = json.loads((old / "instance" / "ins" / "val_0000.json").read_text())
    assert record == json.loads((folder / "instance" / "ins" / "val_0000.json").read_text())


def test_errors_view_gives_tide_per_instance_model_and_compares_ap(folder, index):
    """The Errors view's instance part: TIDE and calibration as the dump computed them with hotcoco on the
    folder's COCO files, for every model scored as instances; A against B in AP from the same files."""
    from metrics import instance as instance_metrics

    view = events.navigation.new_view(range(N_IMAGES))
    page = events.errors_page(index, view, events.DatasetQuery(index.models, model_a="ins", model_b="pan"))
    tide = page.instances.set_index("model")
    assert list(tide.index) == ["pan", "ins"]  # the semantic model has no instances
    gt = json.loads((folder / "instance" / "gt.json").read_text())
    known = {c["id"] for c in gt["categories"]}
    results = {m: [r for r in json.loads((folder / "instance" / f"{m}.json").read_text()) if r["category_id"] in known]
               for m in ("pan", "ins")}
    for model in ("pan", "ins"):
        expected = instance_metrics.mask_ap(gt, results[model], diagnostics=True)
        assert tide.loc[model, "AP@0.5"] == pytest.approx(expected["tide"]["ap"], abs=1e-4)
        assert tide.loc[model, "missed errors"] == expected["tide"]["counts"]["Miss"]
        assert tide.loc[model, "ΔAP class"] == pytest.approx(expected["tide"]["delta_ap"]["Cls"], abs=1e-4)
        assert tide.loc[model, "ECE"] == pytest.approx(expected["calibration"]["ece"], abs=1e-4)
    assert tide.loc["ins", "AP@0.5"] == pytest.approx(index.task_metrics["ins"]["instance"]["ap50"], abs=1e-4)
    table, status = events.instance_comparison(index, events.DatasetQuery(index.models, model_a="ins",
                                                                         model_b="pan"))
    row = table.set_index("metric").loc["AP50"]
    assert row["A: ins"] == pytest.approx(index.task_metrics["ins"]["instance"]["ap50"], abs=1e-4)
    assert row["A − B"] == pytest.approx(index.task_metrics["ins"]["instance"]["ap50"]
                                         - index.task_metrics["pan"]["instance"]["ap50"], abs=1e-4)
    assert row["95% low"] <= row["A − B"] <= row["95% high"] and "ins (A) against pan (B)" in status
    with pytest.raises(events.UserError, match="two models scored as instances"):
        events.instance_comparison(index, events.DatasetQuery(["sem", "ins"]))
