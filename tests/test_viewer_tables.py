"""Per-image tables, pairwise differences, the dataset view, charts and CSV export: values equal the folder's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure

from dump.folder import INSTANCE_COUNTS
from eomt.classes import ClassInfo, ClassTable
from synthetic.folders import MODELS
from viewer import dataset, plots, tables


@pytest.fixture(scope="module")
def saved(folder):
    return json.loads((folder / INSTANCE_COUNTS).read_text())


def test_image_metrics_table_equals_the_folders_metrics(index, saved):
    for pos, image in enumerate(index.images):
        table = tables.image_metrics_table(index, pos, list(MODELS)).set_index("model")
        for model in MODELS:
            entry = saved["pq"][f"{image}_pq_pred_{model}"]
            assert table.loc[model, "PQ"] == pytest.approx(entry["overall_pq"], rel=1e-12)
            assert table.loc[model, "SQ"] == pytest.approx(entry["overall_sq"], rel=1e-12)
            assert table.loc[model, "RQ"] == pytest.approx(entry["overall_rq"], rel=1e-12)
            assert (table.loc[model, "TP"], table.loc[model, "FP"], table.loc[model, "FN"]) == \
                (entry["tp"], entry["fp"], entry["fn"])
            assert table.loc[model, "source"] == "segment_stats.csv"


def test_image_class_table_holds_each_class_counts_and_scores(index, saved, folder):
    stats = pd.read_csv(folder / "segment_stats.csv")
    pos, image = 3, index.images[3]
    table = tables.image_class_table(index, pos, list(MODELS))
    for _, row in table.dropna(subset=["PQ"]).iterrows():
        expected = stats[(stats["image"] == image) & (stats["model"] == row["model"])
                         & (stats["category_id"] == row["class id"])].iloc[0]
        assert (row["TP"], row["FP"], row["FN"]) == (expected["tp"], expected["fp"], expected["fn"])
        entry = saved["pq"][f"{image}_pq_pred_{row['model']}"]
        assert row["PQ"] == pytest.approx(entry["per_class_pq"][row["class"]])
        assert row["SQ"] == pytest.approx(entry["per_class_sq"][row["class"]])
        counts = saved["instance_counts"]
        assert row["GT instances"] == counts[f"{image}_target"].get(row["class"], 0)
        assert row["predicted instances"] == counts[f"{image}_pred_{row['model']}"].get(row["class"], 0)
    assert set(table["model"]) == set(MODELS)


def test_pairwise_and_per_class_differences(index):
    metrics = tables.image_metrics_table(index, 0, list(MODELS))
    pairs = tables.pairwise_table(metrics)
    assert list(zip(pairs["A"], pairs["B"], strict=True)) == [("alpha", "beta"), ("alpha", "gamma"),
                                                              ("beta", "gamma")]
    by_model = metrics.set_index("model")
    for _, row in pairs.iterrows():
        assert row["ΔPQ A−B"] == pytest.approx(by_model.loc[row["A"], "PQ"] - by_model.loc[row["B"], "PQ"])
        assert row["ΔFN A−B"] == by_model.loc[row["A"], "FN"] - by_model.loc[row["B"], "FN"]
    class_table = tables.image_class_table(index, 0, list(MODELS))
    differences = tables.class_difference_table(class_table, list(MODELS)).set_index("class id")
    wide = class_table.pivot(index="class id", columns="model", values="PQ")
    for class_id, row in differences.iterrows():
        expected = wide.loc[class_id, "alpha"] - wide.loc[class_id, "gamma"]
        assert row["ΔPQ alpha−gamma"] == pytest.approx(expected, nan_ok=True)


def test_differences_are_coloured_green_when_better_and_red_when_worse():
    table = pd.DataFrame({"A": ["x", "y"], "ΔPQ A−B": [0.2, -0.1], "ΔFP A−B": [3, -2]})
    html = tables.style_differences(table).to_html()
    assert "+0.200" in html and "-0.100" in html and ">+3<" in html  # counts without decimals
    good, bad = "rgba(0,158,115", "rgba(213,94,0"
    styles = tables.style_differences(table)._compute().ctx
    colour = {key: "; ".join(f"{k}: {v}" for k, v in styles[(row, col)]) for key, (row, col) in
              {"pq+": (0, 1), "pq-": (1, 1), "fp+": (0, 2), "fp-": (1, 2)}.items()}
    assert good in colour["pq+"] and bad in colour["pq-"]
    assert bad in colour["fp+"] and good in colour["fp-"]  # more false positives is worse


def test_dataset_per_class_metrics_come_from_summed_counts(index, saved):
    table = dataset.class_metrics(index, list(MODELS))
    for model in MODELS:
        expected = saved["dataset_level_metrics"][model]["per_class"]
        mine = table[table["model"] == model].set_index("class")
        assert set(mine.index) == set(expected)
        for name, values in expected.items():
            assert mine.loc[name, "PQ"] == pytest.approx(values["pq"], rel=1e-12)
            assert mine.loc[name, "RQ"] == pytest.approx(values["rq"], rel=1e-12)
            assert (mine.loc[name, "TP"], mine.loc[name, "FP"], mine.loc[name, "FN"]) == \
                (values["tp"], values["fp"], values["fn"])


def test_dataset_pq_is_not_a_mean_of_per_image_scores():
    # Image 0: one match at IoU 0.9 (PQ 0.9). Image 1: three stray segments (PQ 0). The mean of the two
    # per-image scores would be 0.45; summed counts give 0.9 / (1 + 3/2) = 0.36, as panopticapi.
    stats = pd.DataFrame({"model": ["m", "m"], "category_id": [5, 5], "tp": [1, 0], "fp": [0, 3], "fn": [0, 0],
                          "iou_sum": [0.9, 0.0], "pos": [0, 1]})
    index = SimpleNamespace(stats=stats, n_images=2, classes=ClassTable((ClassInfo(5, "class 5", True, (1, 2, 3)),)))
    row = dataset.class_metrics(index, ["m"]).iloc[0]
    assert row["PQ"] == pytest.approx(0.36)
    assert (row["TP"], row["FP"], row["images"]) == (1, 3, 2)


def test_things_and_stuff_summary_equals_the_dataset_level_metrics(index, saved):
    summary = dataset.summary_table(index, list(MODELS)).set_index("model")
    for model in MODELS:
        expected = saved["dataset_level_metrics"][model]
        assert summary.loc[model, "PQ"] == pytest.approx(expected["pq"], rel=1e-12)
        assert summary.loc[model, "PQ things"] == pytest.approx(expected["pq_things"], rel=1e-12)
        assert summary.loc[model, "PQ stuff"] == pytest.approx(expected["pq_stuff"], rel=1e-12)
        assert summary.loc[model, "images"] == expected["n_images"]


def test_dataset_scope_can_be_the_current_image_list(index):
    first_three = dataset.class_metrics(index, ["alpha"], positions=[0, 1, 2])
    everything = dataset.class_metrics(index, ["alpha"])
    assert first_three["TP"].sum() == index.image_metrics["alpha"]["tp"].iloc[:3].sum()
    assert everything["TP"].sum() == index.image_metrics["alpha"]["tp"].sum()


def test_class_filters_of_the_dataset_view():
    table = pd.DataFrame({"model": ["A", "B", "A", "B", "A", "B"], "class id": [1, 1, 2, 2, 3, 3],
                          "class": ["car", "car", "sky", "sky", "tree", "tree"],
                          "kind": ["thing", "thing", "stuff", "stuff", "stuff", "stuff"],
                          "PQ": [0.9, 0.5, 0.6, 0.55, 0.2, 0.7]})
    compare = dataset.compare_classes(table, ["A", "B"], "PQ", "A", "B")
    assert compare["class"].tolist() == ["car", "sky", "tree"]  # by A - B, largest first
    assert compare["ΔPQ A−B"].to_numpy() == pytest.approx([0.4, 0.05, -0.5])
    assert dataset.compare_classes(table, ["A", "B"], "PQ", "A", "B", min_delta=0.1)["class"].tolist() == ["car"]
    above = dataset.compare_classes(table, ["A", "B"], "PQ", threshold_side="above", threshold=0.5)
    assert above["class"].tolist() == ["sky"]  # car: B is 0.5, not above
    below = dataset.compare_classes(table, ["A", "B"], "PQ", threshold_side="below", threshold=0.8)
    assert sorted(below["class"]) == ["sky", "tree"]
    assert dataset.compare_classes(table, ["A", "B"], "PQ", "A", "B", kind="stuff")["class"].tolist() == \
        ["sky", "tree"]


def test_confusion_table_accounts_for_every_false_positive(index):
    table = dataset.confusion_table(index, list(MODELS))
    for model in MODELS:
        assert table[table["model"] == model]["FP segments"].sum() == index.image_metrics[model]["fp"].sum()
    shares = table.groupby(["model", "predicted class"])["share of the class's FPs"].sum()
    assert shares.to_numpy() == pytest.approx(1.0)


def test_charts_are_seaborn_figures(index):
    table = dataset.class_metrics(index, list(MODELS))
    compare = dataset.compare_classes(table, list(MODELS), "PQ", "alpha", "beta")
    colors = plots.model_colors(list(MODELS))
    chart = plots.class_metric_chart(compare, list(MODELS), "PQ", colors, max_classes=10)
    assert isinstance(chart, Figure) and len(chart.axes[0].patches) >= 10
    delta = plots.delta_chart(compare, "ΔPQ alpha−beta", max_classes=6)
    assert len([p for p in delta.axes[0].patches if p.get_width() != 0]) <= 6
    assert isinstance(plots.summary_chart(dataset.summary_table(index, list(MODELS)), colors), Figure)
    assert "choose two different models" in plots.delta_chart(compare, None).texts[0].get_text()


def test_csv_export_round_trips(index, tmp_path):
    table = tables.image_list_table(index, [4, 2, 7], list(MODELS))
    path = tables.write_csv(table, "images filtered: car/sky")
    assert path.endswith("images_filtered_car_sky.csv")
    again = pd.read_csv(path)
    assert again["image"].tolist() == ["val_0004", "val_0002", "val_0007"]
    assert again["PQ alpha"].to_numpy() == pytest.approx(index.image_metrics["alpha"]["pq"].to_numpy()[[4, 2, 7]])
