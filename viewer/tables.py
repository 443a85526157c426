"""Tables of numbers: the image list, one image's metrics per model and per class, pairwise differences, CSV.

Per-image PQ/SQ/RQ come from metrics.pq on that image's counts (the mean over its active classes, as
panopticapi defines it); TP/FP/FN stand beside every score, so a PQ of 0 from one stray segment reads as what it is.
Every model also has the numbers of the tasks its prediction is scored on: mIoU (a panoptic model's from its class
map) and instance TP/FP/FN with recall at IoU 0.5 (a panoptic model's from its thing segments); the "numbers from"
column says which prediction each comes from.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dump.folder import GT, FolderError
from metrics import pq
from viewer.analysis import ANALYSIS_METRICS, analysis_metrics, boundary_pq, pair_analysis
from viewer.labelmaps import LabelMapError, load_label_map

GOOD, BAD = (0, 158, 115), (213, 94, 0)
COUNT_DIFFERENCES = ("ΔTP", "ΔFP", "ΔFN")


NUMBERS_FROM = {"panoptic": "panoptic segments; mIoU: its class map; TP/FP/FN@0.5: its thing segments",
                "semantic": "semantic map (sliding windows)", "instance": "instances (top 100)"}
TASK_COLUMNS = ("mIoU", "TP@0.5", "FP@0.5", "FN@0.5", "AP@0.5", "AP@0.75", "R@0.5", "R@0.75")


def pair_counts(folder, pos: int, model: str) -> tuple[dict[int, pq.CategoryCounts] | None, str]:
    """This pair's per-class counts and where they came from: segment_stats.csv, or computed from the PNGs
    when the file lacks the pair; None and the reason when neither is possible."""
    if folder.model_tasks[model] != "panoptic":
        return None, f"{folder.model_tasks[model]} model: no PQ"
    counts = folder.stored_counts(pos, model)
    if counts is not None:
        return counts, "segment_stats.csv"
    if not folder.has(GT, pos):
        return None, "no ground truth"
    if not folder.has(model, pos):
        return None, "no prediction"
    try:
        gt, pred = load_label_map(folder, pos, GT), load_label_map(folder, pos, model)
        return pq.image_counts(gt.segment_map, list(gt.segments.values()), pred.segment_map,
                               list(pred.segments.values())), "computed from the PNGs"
    except (LabelMapError, pq.PanopticFormatError) as e:
        return None, str(e)


def image_list_table(folder, positions, models: list[str]) -> pd.DataFrame:
    """One row per listed image: names, ground-truth content, and each model's PQ with its TP/FP/FN."""
    positions = np.asarray(positions, dtype=np.int64)
    gt = folder.instance_counts[GT][positions]
    entries = folder.manifest["images"]
    table = pd.DataFrame({
        "image": [folder.images[p] for p in positions],
        "index": [entries[p]["index"] for p in positions],
        "key": [entries[p].get("key") for p in positions],
        "GT classes": (gt > 0).sum(axis=1),
        "GT instances": gt.sum(axis=1),
    })
    tasks = {folder.model_tasks[m] for m in models}
    for model in models:
        metrics, task = folder.image_metrics[model], folder.model_tasks[model]
        if task == "panoptic":
            table[f"PQ {model}"] = metrics["pq"].to_numpy()[positions]
            table[f"TP/FP/FN {model}"] = [f"{tp}/{fp}/{fn}" for tp, fp, fn in
                                          metrics[["tp", "fp", "fn"]].to_numpy()[positions].tolist()]
        scored = folder.scored_tasks(model)  # beside a semantic model, a panoptic one's mIoU too
        if "semantic" in scored and "semantic" in tasks:
            table[f"mIoU {model}"] = metrics["miou"].to_numpy()[positions]
        if "instance" in scored and "instance" in tasks:
            table[f"AP@0.5 {model}"] = metrics["ap50"].to_numpy()[positions]
            table[f"R@0.5 {model}"] = metrics["r50"].to_numpy()[positions]
            table[f"TP/FP/FN@0.5 {model}"] = [f"{tp}/{fp}/{fn}" for tp, fp, fn in
                                              metrics[["tp50", "fp50", "fn50"]].to_numpy()[positions].tolist()]
    return table


def task_numbers(folder, pos: int, model: str) -> dict:
    """The image's mIoU and instance numbers of a model, where it has them (from the index's tables)."""
    row = folder.image_metrics[model].iloc[pos]
    scored = folder.scored_tasks(model)
    values = {}
    if "semantic" in scored and not pd.isna(row["miou"]):
        values["mIoU"] = row["miou"]
    if "instance" in scored and not pd.isna(row["r50"]):
        values.update({"TP@0.5": int(row["tp50"]), "FP@0.5": int(row["fp50"]), "FN@0.5": int(row["fn50"]),
                       "AP@0.5": row["ap50"], "AP@0.75": row["ap75"], "R@0.5": row["r50"], "R@0.75": row["r75"]})
    return values


def image_metrics_table(folder, pos: int, models: list[str]) -> pd.DataFrame:
    """Per model: PQ/SQ/RQ of the image (all classes, things, stuff), Boundary PQ and PQ by segment size (COCO's
    bins), TP/FP/FN, active classes, and where the numbers came from."""
    rows = []
    for model in models:
        counts, origin = pair_counts(folder, pos, model)
        analysis, analysis_origin = pair_analysis(folder, pos, model) if folder.model_tasks[model] == "panoptic" \
            else (None, origin)
        row = {"model": model, "task": folder.model_tasks[model], **task_numbers(folder, pos, model),
               **analysis_metrics(analysis, folder.classes.isthing),
               "numbers from": NUMBERS_FROM[folder.model_tasks[model]]}
        if counts is not None:
            summary = pq.pq_summary(counts, folder.classes.isthing)
            per_class = summary["per_class"].values()
            row.update({"PQ": summary["All"]["pq"], "SQ": summary["All"]["sq"], "RQ": summary["All"]["rq"],
                        "PQ things": summary["Things"]["pq"], "PQ stuff": summary["Stuff"]["pq"],
                        "TP": sum(c["tp"] for c in per_class), "FP": sum(c["fp"] for c in per_class),
                        "FN": sum(c["fn"] for c in per_class), "classes": summary["All"]["n"]})
        stored = analysis_origin in (origin, "analysis_stats.csv")
        row["source"] = origin if stored else f"{origin}; analysis: {analysis_origin}"
        rows.append(row)
    columns = ["model", "task", "PQ", "SQ", "RQ", "PQ things", "PQ stuff", *ANALYSIS_METRICS, "TP", "FP", "FN",
               "classes", *TASK_COLUMNS, "numbers from", "source"]
    return pd.DataFrame(rows, columns=columns)


def pairwise_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every pair (A, B) of the table's models, A before B: differences A - B of PQ, SQ, RQ (positive: A better),
    of TP, FP, FN, and of mIoU, AP@0.5 and R@0.5 where both models have them (a panoptic model against a
    semantic or an instance one: its class map's mIoU, its thing segments' AP and recall)."""
    rows = []
    by_model = metrics.set_index("model")
    compared = ("PQ", "SQ", "RQ", "TP", "FP", "FN", "mIoU", "AP@0.5", "R@0.5")
    for a, b in itertools.combinations(by_model.index, 2):
        row = {"A": a, "B": b}
        for column in compared:
            row[f"Δ{column} A−B"] = _difference(by_model.at[a, column], by_model.at[b, column])
        rows.append(row)
    return pd.DataFrame(rows, columns=["A", "B"] + [f"Δ{c} A−B" for c in compared])


def _difference(a, b) -> float:
    return float(a) - float(b) if a is not None and b is not None and not (pd.isna(a) or pd.isna(b)) else np.nan


def image_class_table(folder, pos: int, models: list[str]) -> pd.DataFrame:
    """One row per (class, model) for the classes in the ground truth or active for a model: instances in the
    ground truth and the prediction, PQ/SQ/RQ, Boundary PQ and TP/FP/FN of that class in this image."""
    per_model = {model: pair_counts(folder, pos, model)[0] for model in models}
    analyses = {model: pair_analysis(folder, pos, model)[0] if folder.model_tasks[model] == "panoptic" else None
                for model in models}
    tasks = {model: _task_class_numbers(folder, pos, model) for model in models}
    classes = set()
    for source in [GT, *models]:
        if (source == GT or folder.model_tasks[source] == "panoptic") and folder.has(source, pos):
            with contextlib.suppress(FolderError):  # the panels say what is wrong with it
                classes.update(s["category_id"] for s in folder.segments(source, pos))
    for counts in per_model.values():
        classes.update(counts or {})
    for numbers in tasks.values():
        classes.update(numbers)
    rows = []
    for class_id in sorted(classes):
        column = folder.classes.column.get(class_id)
        gt_instances = int(folder.instance_counts[GT][pos, column]) if column is not None else 0
        for model in models:
            row = {"class id": class_id, "class": folder.classes.label(class_id),
                   "kind": "thing" if folder.classes.isthing.get(class_id) else "stuff", "GT instances": gt_instances,
                   "model": model,
                   "predicted instances": int(folder.instance_counts[model][pos, column]) if column is not None else 0}
            c = (per_model[model] or {}).get(class_id)
            if c is not None and c.tp + c.fp + c.fn > 0:
                pq_value, sq_value, rq_value = pq.quality(c.tp, c.fp, c.fn, c.iou_sum)
                row.update({"PQ": pq_value, "SQ": sq_value, "RQ": rq_value,
                            "Boundary PQ": boundary_pq(analyses[model], class_id), "TP": c.tp, "FP": c.fp,
                            "FN": c.fn})
            row.update(tasks[model].get(class_id, {}))
            rows.append(row)
    columns = ["class id", "class", "kind", "GT instances", "model", "predicted instances", "PQ", "SQ", "RQ",
               "Boundary PQ", "TP", "FP", "FN", "IoU", "TP@0.5", "FP@0.5", "FN@0.5", "AP@0.5"]
    return pd.DataFrame(rows, columns=columns).astype({c: "Int64" for c in ("TP", "FP", "FN", "TP@0.5", "FP@0.5",
                                                                            "FN@0.5")})


def _task_class_numbers(folder, pos: int, model: str) -> dict[int, dict]:
    """Per class of one image: the model's IoU (semantic_stats.csv) and TP/FP/FN and AP at IoU 0.5
    (instance_stats.csv)."""
    numbers: dict[int, dict] = {}
    semantic = folder.semantic_stats
    rows = semantic[(semantic["pos"].to_numpy() == pos) & (semantic["model"].to_numpy() == model)]
    for r in rows.itertuples(index=False):
        numbers.setdefault(int(r.category_id), {})["IoU"] = r.intersection / r.union if r.union else None
    instance = folder.instance_stats
    rows = instance[(instance["pos"].to_numpy() == pos) & (instance["model"].to_numpy() == model)]
    for r in rows.itertuples(index=False):
        if r.tp50 + r.fp50 + r.fn50:
            numbers.setdefault(int(r.category_id), {}).update({"TP@0.5": r.tp50, "FP@0.5": r.fp50, "FN@0.5": r.fn50,
                                                               "AP@0.5": None if pd.isna(r.ap50) else r.ap50})
    return numbers


def class_difference_table(class_table: pd.DataFrame, models: list[str], metric: str = "PQ") -> pd.DataFrame:
    """Per class, the difference A - B of `metric` (PQ, or IoU for models of different tasks) for every pair of
    models (blank where either is undefined)."""
    wide = class_table.pivot(index="class id", columns="model", values=metric).reindex(columns=models)
    names = class_table.drop_duplicates("class id").set_index("class id")["class"]
    table = pd.DataFrame({"class id": wide.index, "class": names.reindex(wide.index).to_numpy()})
    for a, b in itertools.combinations(models, 2):
        table[f"Δ{metric} {a}−{b}"] = (wide[a] - wide[b]).to_numpy(dtype=float)
    return table


GREY = "color: #888; background-color: #f0f0f0"  # a difference whose interval contains 0


def style_differences(table: pd.DataFrame, lower_is_better: tuple[str, ...] = ("ΔFP", "ΔFN"),
                      digits: int = 3):
    """A pandas Styler colouring every Δ column: green where the first model is better, red where worse; where the
    table has a "significant" column (dataset.with_intervals), the ΔPQ of rows whose bootstrap interval contains 0
    is greyed instead."""
    def colour(value, flip: bool) -> str:
        if value is None or pd.isna(value) or value == 0:
            return ""
        better = (value < 0) if flip else (value > 0)
        strength = 0.15 + 0.6 * min(abs(float(value)) / (10.0 if flip else 0.5), 1.0)
        r, g, b = GOOD if better else BAD
        return f"background-color: rgba({r},{g},{b},{strength:.2f})"

    significant = table["significant"] if "significant" in table else None

    def column_styles(values: pd.Series, flip: bool) -> list[str]:
        greyed = significant is not None and str(values.name).startswith("ΔPQ")
        return [GREY if greyed and not significant[i] else colour(v, flip) for i, v in values.items()]

    styler = table.style.format(precision=digits, na_rep="")
    for column in table.columns:
        if str(column).startswith("Δ") and column not in ("ΔPQ 95% low", "ΔPQ 95% high"):
            flip = str(column).startswith(lower_is_better)
            counts = str(column).startswith(COUNT_DIFFERENCES)
            styler = styler.apply(lambda values, flip=flip: column_styles(values, flip), subset=[column])
            styler = styler.format(f"{{:+.{0 if counts else digits}f}}", subset=[column], na_rep="")
    return styler


def rounded(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """For display; exports keep full precision."""
    return table.round(digits)


def write_csv(table: pd.DataFrame, stem: str) -> str:
    """The table as CSV in a fresh temporary folder (the app hands the file to the browser); returns the path."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "table"
    path = Path(tempfile.mkdtemp(prefix="viewer-export-")) / f"{safe}.csv"
    table.to_csv(path, index=False)
    return str(path)
