"""The app's error analysis, bootstrap intervals and threshold sweep, against metrics computed from the folder's PNGs
(metrics.analysis, metrics.errors, metrics.bootstrap), and a version 1 folder without the analysis files."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from dump.folder import ANALYSIS_STATS, GT, SEGMENT_ERRORS
from metrics import pq
from metrics.analysis import analyze_image, sum_analyses
from metrics.bootstrap import counts_array, paired_bootstrap
from metrics.errors import FIXES, error_table, fixed
from synthetic.folders import MODELS
from viewer import analysis, dataset, events, navigation, plots, tables
from viewer.index import load_folder
from viewer.labelmaps import load_label_map, match_segments


def from_pngs(index, model: str):
    """Per image position: PQ counts and analysis counts computed from the folder's PNGs (the oracle)."""
    result = {}
    for pos in range(index.n_images):
        gt, pred = load_label_map(index, pos, GT), load_label_map(index, pos, model)
        args = (gt.segment_map, list(gt.segments.values()), pred.segment_map, list(pred.segments.values()))
        result[pos] = pq.image_counts(*args), analyze_image(*args).counts
    return result


def test_error_types_of_the_inspector_are_the_stored_ones(folder, index):
    with open(folder / SEGMENT_ERRORS) as f:
        stored = {(r["image"], r["model"], r["side"], int(r["id"])): (r["type"], int(r["linked_id"]))
                  for r in csv.DictReader(f)}
    found = {}
    for pos, image in enumerate(index.images):
        for model in MODELS:
            match = match_segments(load_label_map(index, pos, GT), load_label_map(index, pos, model))
            found.update({(image, model, "gt", k): v for k, v in match.gt_error.items()})
            found.update({(image, model, "pred", k): v for k, v in match.pred_error.items()})
    assert found == stored and len({t for t, _ in stored.values()}) >= 4


def test_error_summary_and_class_errors_equal_metrics_errors(index):
    summary = analysis.error_summary(index, list(MODELS)).set_index("model")
    for model in MODELS:
        per_image = from_pngs(index, model)
        counts = pq.sum_counts(c for c, _ in per_image.values())
        errors = sum_analyses(a for _, a in per_image.values()).errors
        expected = error_table(counts, errors, index.classes.isthing)
        row = summary.loc[model]
        assert row["PQ"] == pytest.approx(expected["All"]["pq"], rel=1e-12)
        for kind, n in expected["All"]["fn"].items():
            assert row[f"FN {kind}"] == n
        for kind, n in expected["All"]["fp"].items():
            assert row[f"FP {kind}"] == n
        for fix, delta in expected["All"]["delta_pq"].items():
            assert row[analysis.delta_column(fix)] == pytest.approx(delta, rel=1e-9, abs=1e-12)
        classes = analysis.class_errors(index, [model]).set_index("class id")
        assert set(classes.index) == set(expected["per_class"])
        for class_id, entry in expected["per_class"].items():
            assert classes.loc[class_id, "ΔPQ localization"] == pytest.approx(entry["delta_pq"]["localization"])
            assert classes.loc[class_id, "FN missed"] == entry["fn"]["missed"]
    ordered = analysis.class_errors(index, ["alpha", "beta"])
    totals = ordered[[c for c in analysis.COLUMN_FIX if c[:2] in ("FN", "FP")]].sum(axis=1).groupby(
        ordered["class id"], sort=False).sum()
    assert list(totals) == sorted(totals, reverse=True)  # classes with the most errors first


@pytest.mark.parametrize("fix", [*FIXES, analysis.SQ])
def test_images_by_fix_rank_by_the_per_image_gain(index, fix):
    model = "beta"
    per_image = from_pngs(index, model)
    table = analysis.images_by_fix(index, model, fix, top_n=None)
    gains = table["ΔPQ if fixed"].to_numpy()
    assert list(gains) == sorted(gains, reverse=True)
    for row in table.itertuples():
        counts, counted = per_image[index.position(row.image)]
        expected = error_table(counts, counted.errors, index.classes.isthing)["All"]["delta_pq"][fix]
        assert row[-1] == pytest.approx(expected, abs=1e-12)
    # Every image with such an error is listed (a missed-free image has nothing to gain).
    with_errors = [pos for pos, (c, a) in per_image.items() if (fix == analysis.SQ and any(
        x.tp > x.iou_sum for x in c.values())) or any(e.fn(fix) + e.fp(fix) for e in a.errors.values())]
    assert sorted(index.position(i) for i in table["image"]) == with_errors


def test_images_by_fix_of_one_class(index):
    model = "gamma"
    per_image = from_pngs(index, model)
    class_id = int(analysis.class_errors(index, [model])["class id"].iloc[0])
    table = analysis.images_by_fix(index, model, "class", class_id=class_id, top_n=None)
    for row in table.itertuples():
        counts, counted = per_image[index.position(row.image)]
        after = {k: fixed(c, counted.errors.get(k), "class") if k == class_id else c for k, c in counts.items()}
        expected = pq.pq_summary(after, index.classes.isthing)["All"]["pq"] - \
            pq.pq_summary(counts, index.classes.isthing)["All"]["pq"]
        assert row[-1] == pytest.approx(expected, abs=1e-12)
        assert row.errors == counted.errors[class_id].fn_class + counted.errors[class_id].fp_class


def test_intervals_are_the_paired_bootstrap_of_the_pngs_counts(index):
    intervals = dataset.pair_intervals(index, "alpha", "gamma")
    a, b = from_pngs(index, "alpha"), from_pngs(index, "gamma")
    ids = list(index.classes.isthing)
    expected = paired_bootstrap(counts_array([a[p][0] for p in range(index.n_images)], ids),
                                counts_array([b[p][0] for p in range(index.n_images)], ids),
                                [index.classes.isthing[k] for k in ids])
    for group in ("All", "Things", "Stuff"):
        assert intervals[group].low == pytest.approx(expected[group].low, abs=1e-12)
        assert intervals[group].high == pytest.approx(expected[group].high, abs=1e-12)
    for k, interval in zip(ids, expected["per_class"], strict=True):
        assert (intervals["per_class"][k].low is None) == (interval.low is None)
        if interval.low is not None:
            assert intervals["per_class"][k].low == pytest.approx(interval.low, abs=1e-12)
    same = dataset.pair_intervals(index, "alpha", "alpha")["All"]
    assert (same.low, same.high, same.significant) == (0.0, 0.0, False)


def test_class_table_greys_differences_that_are_not_significant(index):
    view = navigation.new_view(range(index.n_images))
    page = events.dataset_page(index, view, events.DatasetQuery(list(MODELS), "PQ", model_a="alpha",
                                                                model_b="gamma"))
    compare = page.table.data
    assert {"ΔPQ 95% low", "ΔPQ 95% high", "significant"} <= set(compare.columns)
    assert compare["significant"].any() and not compare["significant"].all()
    ok = compare.dropna(subset=["ΔPQ 95% low"])
    assert (ok["ΔPQ 95% low"] <= ok["ΔPQ alpha−gamma"] + 1e-12).all()
    assert (ok["significant"] == ((ok["ΔPQ 95% low"] > 0) | (ok["ΔPQ 95% high"] < 0))).all()
    greyed = [selector for selectors, style in re.findall(r"([^{}]+)\{([^}]*)\}", page.table.to_html())
              if "#f0f0f0" in style for selector in selectors.split(",")]
    assert len(greyed) == int((~compare["significant"] & compare["ΔPQ alpha−gamma"].notna()).sum())
    assert page.intervals.data["classes"].tolist() == ["all", "things", "stuff"]
    bars = plots.delta_chart(compare, "ΔPQ alpha−gamma").axes[0].patches
    grey = sum(1 for bar in bars if bar.get_facecolor()[:3] == pytest.approx((0xBB / 255,) * 3))
    assert grey == int((~compare["significant"] & compare["ΔPQ alpha−gamma"].notna()).sum())


def test_image_tables_carry_boundary_pq_and_sizes(index):
    per_image = from_pngs(index, "alpha")
    table = tables.image_metrics_table(index, 3, list(MODELS)).set_index("model")
    counts = per_image[3][1]
    assert table.loc["alpha", "Boundary PQ"] == pytest.approx(
        pq.pq_summary(counts.boundary, index.classes.isthing)["All"]["pq"])
    assert table.loc["alpha", "PQ small"] == pytest.approx(
        pq.pq_summary(counts.sizes["small"], index.classes.isthing)["All"]["pq"])
    classes = tables.image_class_table(index, 3, ["alpha"]).set_index("class id")
    for class_id, c in counts.boundary.items():
        assert classes.loc[class_id, "Boundary PQ"] == pytest.approx(pq.quality(c.tp, c.fp, c.fn, c.iou_sum)[0])


def test_a_version_1_folder_opens_and_says_how_to_add_the_analysis(folder, index, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(folder, old)
    for path in [*old.glob("panoptic/*/*.analysis.json"), *old.glob("panoptic/*/*.sweep.json"),
                 old / ANALYSIS_STATS, old / SEGMENT_ERRORS, old / "sweep.json"]:
        path.unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    opened = load_folder(old)
    assert not opened.has_analysis and opened.sweep == {}
    assert any(f"python predict_dump.py --out {opened.root} --reindex" in p for p in opened.problems)
    view = navigation.new_view(range(opened.n_images))
    page = events.errors_page(opened, view, events.DatasetQuery(list(MODELS)))
    assert "--reindex" in page.note
    assert "--sweep" in events.sweep_page(opened, list(MODELS)).status
    # The image on screen still gets its Boundary PQ and sizes, from its PNGs, the same numbers.
    mine = tables.image_metrics_table(opened, 2, list(MODELS))
    stored = tables.image_metrics_table(index, 2, list(MODELS))
    assert mine["source"].str.contains("analysis: computed from the PNGs").all()
    np.testing.assert_allclose(mine[["Boundary PQ", "PQ small"]].to_numpy(float),
                               stored[["Boundary PQ", "PQ small"]].to_numpy(float), rtol=1e-12)


def test_threshold_sweep_view(index, folder):
    sweep = json.loads((folder / "sweep.json").read_text())["models"]
    levels = json.loads((folder / "instance_counts.json").read_text())["dataset_level_metrics"]
    page = events.sweep_page(index, list(MODELS))
    table = page.table
    defaults = table[table["default"]]
    assert defaults["model"].tolist() == list(MODELS)
    for row in defaults.itertuples():
        assert row.PQ == pytest.approx(levels[row.model]["pq"], abs=1e-4)  # rounded for display
    for model in MODELS:
        best = max(sweep[model]["results"], key=lambda r: r["All"]["pq"])
        assert f"`{model}` {best['All']['pq']:.4f} at score {best['score']:g}" in page.status
    legend = [t.get_text() for t in page.chart.axes[0].get_legend().get_texts()]
    assert "default setting" in legend and any(t.startswith("alpha best:") for t in legend)
