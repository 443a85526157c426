"""Per-image numbers of the semantic and instance tasks, from the folder's aggregate tables (semantic_stats.csv,
instance_stats.csv), never from per-image files: what the image list, the rankings and the class filters need.

- Per-image mIoU: the mean IoU over the image's classes with a union (for ranking images; dataset mIoU always
  comes from summed counts, viewer.dataset).
- Per-image instance numbers: TP/FP/FN at IoU 0.5 and 0.75 (COCOeval's matching of the top 100), the recall
  they give, R@0.5 = TP / (TP + FN), and the image's AP@0.5 / AP@0.75: the mean over the image's classes with
  ground truth of the AP COCOeval gives for the image alone, where false positives ranked above true ones cost
  (a folder written before per-image APs has none: NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eomt.classes import ClassTable

SEMANTIC_COLUMNS = ("miou", "semantic_classes")
INSTANCE_COLUMNS = ("tp50", "fp50", "fn50", "tp75", "fp75", "fn75", "r50", "r75", "ap50", "ap75")
# The per-image metrics a ranking can use, with the task whose prediction each comes from.
RANK_METRICS = {"pq": "PQ", "sq": "SQ", "rq": "RQ", "miou": "mIoU", "ap50": "AP@0.5", "ap75": "AP@0.75",
                "r50": "R@0.5", "r75": "R@0.75"}
METRIC_TASK = {"pq": "panoptic", "sq": "panoptic", "rq": "panoptic", "miou": "semantic", "ap50": "instance",
               "ap75": "instance", "r50": "instance", "r75": "instance"}


def _model_rows(table: pd.DataFrame, model: str) -> pd.DataFrame:
    return table[table["model"] == model]


def per_image_semantic(stats: pd.DataFrame, n_images: int, model: str) -> pd.DataFrame:
    """Per position: mIoU over the image's classes with a union (NaN without), and how many there are."""
    rows = _model_rows(stats, model)
    rows = rows[rows["union"] > 0]
    table = pd.DataFrame({"pos": rows["pos"], "iou": rows["intersection"] / rows["union"], "n": 1})
    sums = table.groupby("pos")[["iou", "n"]].sum().reindex(np.arange(n_images))
    return pd.DataFrame({"miou": sums["iou"] / sums["n"], "semantic_classes": sums["n"].fillna(0).astype(np.int64)})


def per_image_instance(stats: pd.DataFrame, n_images: int, model: str) -> pd.DataFrame:
    """Per position: TP/FP/FN at 0.5 and 0.75 summed over classes, the recall at each (NaN without ground
    truth objects, or without the image's counts) and the mean of the classes' own APs at each (NaN without)."""
    counts = ["tp50", "fp50", "fn50", "tp75", "fp75", "fn75"]
    rows = _model_rows(stats, model)
    grouped = rows.groupby("pos")
    sums = grouped[counts].sum().reindex(np.arange(n_images))
    aps = grouped[["ap50", "ap75"]].mean().reindex(np.arange(n_images))  # NaN (no ground truth) left out
    covered = sums["tp50"].notna()
    sums = sums.fillna(0).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in ("50", "75"):
            total = sums[f"tp{t}"] + sums[f"fn{t}"]
            sums[f"r{t}"] = np.where(covered & (total > 0), sums[f"tp{t}"] / total.where(total > 0, 1), np.nan)
            sums[f"ap{t}"] = aps[f"ap{t}"].to_numpy()
    return sums[list(INSTANCE_COLUMNS)]


def presence(stats: pd.DataFrame, column: str, classes: ClassTable, n_images: int, model: str | None,
             cap: int | None = None) -> np.ndarray:
    """(images, classes) counts of `column` per image and class, from one model's rows (None: any model's, as a
    ground-truth count that every model's rows repeat); `cap` 1 turns pixel counts into presence."""
    matrix = np.zeros((n_images, len(classes)), dtype=np.int32)
    rows = stats if model is None else _model_rows(stats, model)
    columns = rows["category_id"].map(classes.column)
    known = columns.notna().to_numpy()
    values = rows[column].to_numpy()[known]
    if cap is not None:
        values = np.minimum(values, cap)
    matrix[rows["pos"].to_numpy()[known], columns.to_numpy()[known].astype(np.int64)] = values
    return matrix


def shared_metric(models_tasks: list[set[str]]) -> str | None:
    """The first ranking metric every model has: PQ between panoptic models, mIoU with a semantic one (a panoptic
    model's class map), AP@0.5 with an instance one (a panoptic model's thing segments); None when there is
    none."""
    for metric in ("pq", "miou", "ap50"):
        if all(METRIC_TASK[metric] in tasks for tasks in models_tasks):
            return metric
    return None


def scored_tasks(task: str) -> set[str]:
    """The tasks a model of `task` is scored on: a panoptic prediction is also a semantic and an instance one."""
    return {"panoptic", "semantic", "instance"} if task == "panoptic" else {task}
