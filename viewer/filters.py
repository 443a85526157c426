"""Which images to look at: class and content filters, and the signed ranking of two models.

Both work on the index's arrays (instances per class per image, per-image metrics), so they take milliseconds
on 2,000 images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dump.folder import GT
from viewer.markup import text
from viewer.task_stats import METRIC_TASK, RANK_METRICS, scored_tasks, shared_metric

ORDERS = {
    "a_better": "A beats B most",
    "b_better": "B beats A most",
    "largest": "largest |difference|",
}


@dataclass(frozen=True)
class ImageFilter:
    """Images whose `source` (ground truth or a model) contains the classes, with content limits.

    `match` "all": every chosen class present; "any": at least one. Instances count segments (a stuff class
    counts 1): of the chosen classes when there are some, of all classes otherwise. None = no limit."""

    classes: tuple[int, ...] = ()
    match: str = "all"
    source: str = GT
    min_classes: int | None = None
    max_classes: int | None = None
    min_instances: int | None = None
    max_instances: int | None = None


def describe(image_filter: ImageFilter, class_label) -> str:
    """The filter in words (Markdown: the names from the folder in code spans), for the list's caption and
    export file name."""
    names = ", ".join(text(class_label(c)) for c in image_filter.classes)
    parts = [f"{image_filter.match} of {names} in {text(image_filter.source)}"] if names else []
    parts += [f"{what} {value}" for what, value in (
        ("classes ≥", image_filter.min_classes), ("classes ≤", image_filter.max_classes),
        ("instances ≥", image_filter.min_instances), ("instances ≤", image_filter.max_instances)) if value is not None]
    return "filter: " + "; ".join(parts) if parts else "all images"


def filter_images(folder, image_filter: ImageFilter) -> np.ndarray:
    """Positions of the images that pass, in manifest order."""
    counts = folder.instance_counts.get(image_filter.source)
    if counts is None:
        raise ValueError(f"unknown source {image_filter.source!r}: choose {GT!r} or one of {folder.models}")
    keep = folder.available[image_filter.source].copy()  # an image without this source contains nothing
    columns = [folder.classes.column[c] for c in image_filter.classes if c in folder.classes.column]
    if len(columns) < len(image_filter.classes):
        return np.zeros(0, dtype=np.int64)  # a class the folder does not know is in no image
    if columns:
        present = counts[:, columns] > 0
        keep &= present.all(axis=1) if image_filter.match == "all" else present.any(axis=1)
    distinct = (counts > 0).sum(axis=1)
    instances = counts[:, columns].sum(axis=1) if columns else counts.sum(axis=1)
    for values, low, high in ((distinct, image_filter.min_classes, image_filter.max_classes),
                              (instances, image_filter.min_instances, image_filter.max_instances)):
        if low is not None:
            keep &= values >= low
        if high is not None:
            keep &= values <= high
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class Ranking:
    positions: np.ndarray  # ranked image positions, best first for the chosen order
    table: pd.DataFrame  # image, rank, metric of A and B, difference, TP/FP/FN of both
    left_out: int  # images of the input with the metric undefined or missing for A or B


def ranking_metric(folder, model_a: str, model_b: str, metric: str) -> str:
    """The metric a ranking uses: `metric`, or for "auto" the first both models have (shared_metric); ValueError
    when a model has no such number (a semantic model has no PQ) or the two share none."""
    tasks = [scored_tasks(folder.model_tasks[model_a]), scored_tasks(folder.model_tasks[model_b])]
    chosen = shared_metric(tasks) if metric == "auto" else metric
    if metric == "auto" and chosen == "ap50" and any(folder.image_metrics[m]["ap50"].isna().all()
                                                      for m in (model_a, model_b)):
        chosen = "r50"  # a folder written before per-image APs: rank by what it has
    if chosen is None:
        raise ValueError(f"{model_a} ({folder.model_tasks[model_a]}) and {model_b} ({folder.model_tasks[model_b]}) "
                         "share no per-image metric: a semantic and an instance model are not scored on one task")
    if chosen not in RANK_METRICS:
        raise ValueError(f"metric must be one of {['auto', *RANK_METRICS]}")
    missing = [m for m, scored in zip((model_a, model_b), tasks, strict=True) if METRIC_TASK[chosen] not in scored]
    if missing:
        raise ValueError(f"{missing[0]} is a {folder.model_tasks[missing[0]]} model: it has no {RANK_METRICS[chosen]}"
                         f"; rank by the metric both share ({RANK_METRICS.get(shared_metric(tasks), 'none')})")
    return chosen


def rank_images(folder, positions: np.ndarray, model_a: str, model_b: str, order: str = "a_better",
                metric: str = "pq", top_n: int | None = None) -> Ranking:
    """Ranks `positions` by the signed difference A - B of a per-image metric (pq, sq, rq; miou; ap50, ap75: the
    image's own AP of the instances at IoU 0.5, 0.75; r50, r75: their recall; "auto": the first both models
    have).

    "a_better": largest A - B first (where A beats B most); "b_better": smallest first (where B beats A most);
    "largest": largest |A - B| first. Ties keep manifest order. Images where either value is undefined (no
    active class) or missing are left out and counted."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}")
    for model in (model_a, model_b):
        if model not in folder.image_metrics:
            raise ValueError(f"unknown model {model!r}: the folder has {folder.models}")
    metric = ranking_metric(folder, model_a, model_b, metric)
    positions = np.asarray(positions, dtype=np.int64)
    a = folder.image_metrics[model_a][metric].to_numpy()[positions]
    b = folder.image_metrics[model_b][metric].to_numpy()[positions]
    defined = ~(np.isnan(a) | np.isnan(b))
    positions, a, b = positions[defined], a[defined], b[defined]
    delta = a - b
    key = {"a_better": -delta, "b_better": delta, "largest": -np.abs(delta)}[order]
    ranked = np.argsort(key, kind="stable")
    if top_n is not None and top_n > 0:
        ranked = ranked[:top_n]
    chosen = positions[ranked]
    name = RANK_METRICS[metric]
    table = pd.DataFrame({
        "image": [folder.images[p] for p in chosen],
        "rank": np.arange(1, len(chosen) + 1),
        f"{name} A ({model_a})": a[ranked],
        f"{name} B ({model_b})": b[ranked],
        f"Δ{name} A−B": delta[ranked],
    })
    counts = {"panoptic": ("tp", "fp", "fn"), "semantic": (), "instance": ("tp50", "fp50", "fn50")}[METRIC_TASK[metric]]
    for label, model in (("A", model_a), ("B", model_b)):
        metrics = folder.image_metrics[model]
        for count in counts:
            table[f"{count.upper().replace('50', '@0.5')} {label}"] = metrics[count].to_numpy()[chosen]
    return Ranking(chosen, table, int((~defined).sum()))
