"""The whole-dataset view: per-class PQ/SQ/RQ from counts summed over images (never a mean of per-image scores),
Things/Stuff summaries, class filters, paired bootstrap intervals of ΔPQ, and what the models' unmatched segments
mostly cover.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import pandas as pd

from dump.folder import GT
from metrics import pq
from metrics.bootstrap import GROUPS, paired_bootstrap
from viewer.labelmaps import LabelMapError, load_label_map, match_segments

CLASS_COLUMNS = ["model", "class id", "class", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN", "images"]


def _select(table: pd.DataFrame, n_images: int, models: list[str], positions) -> pd.DataFrame:
    """The rows of a per-image table (a "pos" column) of `models` on the images `positions` (None: all)."""
    rows = table[table["model"].isin(models)]
    if positions is not None:
        keep = np.zeros(n_images, dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = True
        rows = rows[keep[rows["pos"].to_numpy()]]
    return rows


def _rows(folder, models: list[str], positions) -> pd.DataFrame:
    return _select(folder.stats, folder.n_images, models, positions)


def class_metrics(folder, models: list[str], positions=None) -> pd.DataFrame:
    """Per (model, active class): PQ/SQ/RQ of the summed TP/FP/FN/IoU over the images (`positions`, default
    all), as panopticapi's dataset-level per_class; "images" counts the images where the class is active."""
    rows = _rows(folder, models, positions)
    rows = rows[(rows["tp"] + rows["fp"] + rows["fn"]) > 0]
    sums = rows.groupby(["model", "category_id"], sort=False).agg(
        tp=("tp", "sum"), fp=("fp", "sum"), fn=("fn", "sum"), iou_sum=("iou_sum", "sum"), images=("pos", "size"))
    sums = sums.reset_index()
    pq_value, sq_value, rq_value = pq.quality(sums["tp"], sums["fp"], sums["fn"], sums["iou_sum"])
    table = pd.DataFrame({
        "model": sums["model"], "class id": sums["category_id"],
        "class": [folder.classes.label(c) for c in sums["category_id"]],
        "kind": ["thing" if folder.classes.isthing.get(c) else "stuff" for c in sums["category_id"]],
        "PQ": pq_value, "SQ": sq_value, "RQ": rq_value,
        "TP": sums["tp"], "FP": sums["fp"], "FN": sums["fn"], "images": sums["images"],
    }, columns=CLASS_COLUMNS)
    order = {m: k for k, m in enumerate(models)}
    table = table.sort_values(["class id", "model"], key=lambda s: s.map(order) if s.name == "model" else s)
    return table.reset_index(drop=True)


def summary_table(folder, models: list[str], positions=None) -> pd.DataFrame:
    """Per model: PQ/SQ/RQ over all, thing and stuff classes (means over active classes of summed counts)."""
    rows = _rows(folder, models, positions)
    result = []
    for model in models:
        mine = rows[rows["model"] == model]
        sums = mine.groupby("category_id")[["tp", "fp", "fn", "iou_sum"]].sum()
        counts = {int(c): pq.CategoryCounts(int(r.tp), int(r.fp), int(r.fn), float(r.iou_sum))
                  for c, r in sums.iterrows()}
        summary = pq.pq_summary(counts, folder.classes.isthing)
        row = {"model": model, "images": int(mine["pos"].nunique())}
        for group in ("All", "Things", "Stuff"):
            suffix = "" if group == "All" else f" {group.lower()}"
            for metric in ("pq", "sq", "rq"):
                row[f"{metric.upper()}{suffix}"] = summary[group][metric]
            row[f"classes{suffix}"] = summary[group]["n"]
        result.append(row)
    return pd.DataFrame(result)


def compare_classes(table: pd.DataFrame, models: list[str], metric: str = "PQ", model_a: str | None = None,
                    model_b: str | None = None, min_delta: float | None = None, threshold_side: str | None = None,
                    threshold: float | None = None, kind: str = "all") -> pd.DataFrame:
    """One row per class with each model's `metric` and A - B, kept when they pass the filters:

    min_delta: A better than B by at least this much (A - B >= min_delta);
    threshold_side "above"/"below": every chosen model's value above / below `threshold` (a model without the
    class active fails); kind "thing"/"stuff" keeps one kind. Sorted by A - B, largest first."""
    wide = table[table["model"].isin(models)].pivot_table(index=["class id", "class", "kind"], columns="model",
                                                          values=metric, aggfunc="first")
    wide = wide.reindex(columns=models).reset_index()
    wide.columns.name = None
    delta_name = None
    if model_a and model_b and model_a != model_b and model_a in wide and model_b in wide:
        delta_name = f"Δ{metric} {model_a}−{model_b}"
        wide[delta_name] = wide[model_a] - wide[model_b]
    keep = np.ones(len(wide), dtype=bool)
    if kind in ("thing", "stuff"):
        keep &= (wide["kind"] == kind).to_numpy()
    if delta_name and min_delta is not None:
        keep &= (wide[delta_name] >= min_delta).fillna(False).to_numpy()
    if threshold_side in ("above", "below") and threshold is not None and models:
        values = wide[models].to_numpy(dtype=float)
        passed = values > threshold if threshold_side == "above" else values < threshold
        keep &= (passed & ~np.isnan(values)).all(axis=1)
    wide = wide[keep]
    if delta_name:
        wide = wide.sort_values(delta_name, ascending=False, na_position="last")
    return wide.reset_index(drop=True)


# ------------------------------------------------------------------------------------- is the difference real?

INTERVAL_COLUMNS = ("ΔPQ 95% low", "ΔPQ 95% high", "significant")


def paired_images(folder, model_a: str, model_b: str, positions=None) -> np.ndarray:
    """Positions of the images both models have counts for (among `positions`, default all)."""
    both = folder.covered[model_a] & folder.covered[model_b]
    chosen = np.arange(folder.n_images) if positions is None else np.unique(np.asarray(positions, dtype=np.int64))
    return chosen[both[chosen]]


def counts_array(folder, model: str, images: np.ndarray) -> np.ndarray:
    """(len(images), n_classes, 4) tp, fp, fn, iou_sum per image and class (classes in the table's order), the
    bootstrap's input, from segment_stats.csv."""
    row_of = np.full(folder.n_images, -1, dtype=np.int64)
    row_of[images] = np.arange(len(images))
    stats = folder.stats[folder.stats["model"] == model]
    rows = row_of[stats["pos"].to_numpy()]
    columns = stats["category_id"].map(folder.classes.column).to_numpy(dtype=float)
    keep = (rows >= 0) & ~np.isnan(columns)
    array = np.zeros((len(images), len(folder.classes), 4))
    array[rows[keep], columns[keep].astype(np.int64)] = stats[["tp", "fp", "fn", "iou_sum"]].to_numpy(float)[keep]
    return array


@lru_cache(maxsize=16)
def _bootstrap(folder, model_a: str, model_b: str, images: tuple[int, ...], resamples: int, seed: int) -> dict:
    chosen = np.array(images, dtype=np.int64)
    isthing = [c.isthing for c in folder.classes]
    return paired_bootstrap(counts_array(folder, model_a, chosen), counts_array(folder, model_b, chosen), isthing,
                            resamples, seed)


def pair_intervals(folder, model_a: str, model_b: str, positions=None, resamples: int = 1000,
                   seed: int = 0) -> dict | None:
    """metrics.bootstrap.paired_bootstrap of A against B over the images both have (None without any):
    {"All" | "Things" | "Stuff": Interval, "per_class": {class id: Interval}, "images": n}. Remembered for the
    last few requests: the page asks again for every filter of the same comparison."""
    images = paired_images(folder, model_a, model_b, positions)
    if not len(images):
        return None
    result = _bootstrap(folder, model_a, model_b, tuple(images.tolist()), resamples, seed)
    per_class = dict(zip((c.id for c in folder.classes), result["per_class"], strict=True))
    return {**{group: result[group] for group in GROUPS}, "per_class": per_class, "images": len(images)}


def with_intervals(compare: pd.DataFrame, intervals: dict | None) -> pd.DataFrame:
    """A compare_classes table of ΔPQ with each class's 95% interval and whether it leaves out 0."""
    if intervals is None:
        return compare
    found = [intervals["per_class"].get(int(c)) for c in compare["class id"]]
    return compare.assign(**{
        INTERVAL_COLUMNS[0]: [i.low if i is not None else None for i in found],
        INTERVAL_COLUMNS[1]: [i.high if i is not None else None for i in found],
        INTERVAL_COLUMNS[2]: [bool(i is not None and i.significant) for i in found]}).astype(
        {INTERVAL_COLUMNS[0]: float, INTERVAL_COLUMNS[1]: float})


def interval_summary(intervals: dict | None, model_a: str, model_b: str) -> pd.DataFrame:
    """All / Things / Stuff: PQ of A and B, ΔPQ and its 95% paired bootstrap interval."""
    columns = ["classes", f"PQ A ({model_a})", f"PQ B ({model_b})", "ΔPQ A−B", *INTERVAL_COLUMNS, "images"]
    if intervals is None:
        return pd.DataFrame(columns=columns)
    rows = [[group.lower(), i.pq_a, i.pq_b, i.delta, i.low, i.high, i.significant, intervals["images"]]
            for group, i in ((g, intervals[g]) for g in GROUPS)]
    return pd.DataFrame(rows, columns=columns)


def sweep_table(sweep: dict, models: list[str]) -> pd.DataFrame:
    """One row per (model, setting) of the threshold sweep: PQ/SQ/RQ over all, thing and stuff classes, which
    setting is the default and which is the model's best by PQ."""
    rows = []
    for model in [m for m in models if m in sweep]:
        entry = sweep[model]
        default = entry.get("default") or {}
        pqs = [r["All"]["pq"] for r in entry["results"]]
        best = max(range(len(pqs)), key=lambda k: -1 if pqs[k] is None else pqs[k], default=None)
        for k, r in enumerate(entry["results"]):
            row = {"model": model, "score": r["score"], "overlap": r["overlap"],
                   "default": (r["score"], r["overlap"]) == (default.get("score"), default.get("overlap")),
                   "best PQ": k == best}
            for group, suffix in (("All", ""), ("Things", " things"), ("Stuff", " stuff")):
                row.update({f"{m.upper()}{suffix}": r[group][m] for m in ("pq", "sq", "rq")})
            row["images"] = entry.get("images")
            rows.append(row)
    columns = ["model", "score", "overlap", "default", "best PQ", "PQ", "SQ", "RQ", "PQ things", "SQ things",
               "RQ things", "PQ stuff", "SQ stuff", "RQ stuff", "images"]
    return pd.DataFrame(rows, columns=columns)


def _unmatched_of_image(folder, pos: int, models: list[str]) -> list[tuple]:
    """(model, predicted class, covered ground-truth class or None for void, pixels) per FP segment."""
    try:
        gt = load_label_map(folder, pos, GT, cached=False)
    except LabelMapError:
        return []
    found = []
    for model in models:
        try:  # an unreadable prediction, or one that cannot be matched, leaves only this image out
            pred = load_label_map(folder, pos, model, cached=False)
            match = match_segments(gt, pred)
        except LabelMapError:
            continue
        for segment_id, (covered, pixels) in match.fp_cover.items():
            found.append((model, pred.segments[segment_id]["category_id"], covered, pixels,
                          int(pred.segments[segment_id].get("area") or 0)))
    return found


def confusion_table(folder, models: list[str], positions=None, progress=None, workers: int = 2) -> pd.DataFrame:
    """Which ground-truth class each model's false-positive segments mostly cover, over `positions`.

    One row per (model, predicted class, covered class): FP segments, their pixels on the covered class, and the
    share of that predicted class's FPs. Decodes every PNG of those images, so it runs only on request;
    `progress(fraction, text)` is called as images are done."""
    positions = list(range(folder.n_images)) if positions is None else [int(p) for p in positions]
    positions = [p for p in positions if folder.has(GT, p)]
    found = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for k, rows in enumerate(pool.map(lambda p: _unmatched_of_image(folder, p, models), positions)):
            found.extend(rows)
            if progress is not None and (k % 25 == 0 or k == len(positions) - 1):
                progress((k + 1) / max(len(positions), 1), f"{k + 1} of {len(positions)} images")
    columns = ["model", "predicted class", "mostly covers (ground truth)", "FP segments", "pixels on it",
               "share of the class's FPs"]
    if not found:
        return pd.DataFrame(columns=columns)
    raw = pd.DataFrame(found, columns=["model", "pred", "covered", "pixels", "area"])
    raw["covered"] = raw["covered"].fillna(-1).astype(int)
    grouped = raw.groupby(["model", "pred", "covered"]).agg(segments=("pixels", "size"), pixels=("pixels", "sum"))
    grouped = grouped.reset_index()
    totals = grouped.groupby(["model", "pred"])["segments"].transform("sum")
    table = pd.DataFrame({
        "model": grouped["model"],
        "predicted class": [folder.classes.label(c) for c in grouped["pred"]],
        "mostly covers (ground truth)": ["void" if c < 0 else folder.classes.label(c) for c in grouped["covered"]],
        "FP segments": grouped["segments"],
        "pixels on it": grouped["pixels"],
        "share of the class's FPs": grouped["segments"] / totals,
    }, columns=columns)
    return table.sort_values(["FP segments", "pixels on it"], ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------------- semantic and instance

TASK_CLASS_COLUMNS = ["model", "class id", "IoU", "IoU from", "AP", "AP from"]


def _semantic_sums(folder, models: list[str], positions) -> pd.DataFrame:
    """semantic_stats.csv rows of `models` summed per (model, class) over the images."""
    rows = _select(folder.semantic_stats, folder.n_images, models, positions)
    return rows.groupby(["model", "category_id"], sort=False)[["intersection", "union", "gt_pixels",
                                                                 "pred_pixels"]].sum().reset_index()


def task_class_metrics(folder, models: list[str], positions=None) -> pd.DataFrame:
    """Per (model, class): IoU from pixel counts summed over the images, and mask AP (pycocotools', over all
    images: AP needs every detection, so it is not recomputed for a list), each with the task its prediction
    comes from (a panoptic model's class map and thing segments)."""
    sums = _semantic_sums(folder, models, positions)
    sums = sums[sums["union"] > 0]
    semantic = pd.DataFrame({"model": sums["model"], "class id": sums["category_id"],
                             "IoU": sums["intersection"] / sums["union"],
                             "IoU from": sums["model"].map(lambda m: folder.model_tasks[m])})
    rows = []
    if positions is None:
        for model in models:
            entry = (folder.task_metrics.get(model) or {}).get("instance") or {}
            rows += [{"model": model, "class id": int(c), "AP": ap, "AP from": entry["source_task"]}
                     for c, ap in (entry.get("per_class") or {}).items() if ap is not None]
    instance = pd.DataFrame(rows, columns=["model", "class id", "AP", "AP from"])
    return semantic.merge(instance, on=["model", "class id"], how="outer")[TASK_CLASS_COLUMNS]


def all_class_metrics(folder, models: list[str], positions=None) -> pd.DataFrame:
    """class_metrics (PQ/SQ/RQ) beside task_class_metrics (IoU, AP): one row per (model, class) active in any."""
    table = class_metrics(folder, models, positions).merge(task_class_metrics(folder, models, positions),
                                                           on=["model", "class id"], how="outer")
    table["class"] = [folder.classes.label(c) for c in table["class id"]]
    table["kind"] = ["thing" if folder.classes.isthing.get(c) else "stuff" for c in table["class id"]]
    order = {m: k for k, m in enumerate(models)}
    table = table.sort_values(["class id", "model"], key=lambda s: s.map(order) if s.name == "model" else s)
    return table.reset_index(drop=True)


def task_summary(folder, models: list[str], positions=None) -> pd.DataFrame:
    """Per model: mIoU, fwIoU, aAcc, mAcc from counts summed over the images and mask AP (all images), each with
    the task its prediction comes from."""
    from metrics.semantic import ClassCounts, summary

    sums = _semantic_sums(folder, models, positions)
    size = max(folder.classes.names, default=-1) + 1
    result = []
    for model in models:
        mine = sums[sums["model"] == model]
        row = {"model": model, "task": folder.model_tasks[model]}
        if len(mine):
            counts = ClassCounts(*(np.bincount(mine["category_id"], weights=mine[c], minlength=size).astype(np.int64)
                                   for c in ("intersection", "union", "gt_pixels", "pred_pixels")))
            values = summary(counts, class_ids=())
            row.update({"mIoU": values["miou"], "fwIoU": values["fwiou"], "aAcc": values["aacc"],
                        "mAcc": values["macc"], "mIoU from": folder.model_tasks[model]})
        instance = (folder.task_metrics.get(model) or {}).get("instance")
        if instance and positions is None:
            row.update({"AP": instance["ap"], "AP50": instance["ap50"], "AP75": instance["ap75"],
                        "AP small": instance["ap_small"], "AP medium": instance["ap_medium"],
                        "AP large": instance["ap_large"], "AP from": instance["source_task"]})
        result.append(row)
    columns = ["model", "task", "mIoU", "fwIoU", "aAcc", "mAcc", "mIoU from", "AP", "AP50", "AP75", "AP small",
               "AP medium", "AP large", "AP from"]
    return pd.DataFrame(result, columns=columns)


# ------------------------------------------------------------------------------------------ confusion matrix

NO_CLASS_LABEL = "no class"


@lru_cache(maxsize=4)
def _confusion_rows(folder) -> pd.DataFrame:
    """semantic_confusion.csv with a "pos" column, read on first use (opening the folder does not need it)."""
    from dump.folder import SEMANTIC_CONFUSION

    path = folder.layout.file(SEMANTIC_CONFUSION)
    columns = ["image", "model", "source_task", "gt_category_id", "pred_category_id", "pixels", "pos"]
    try:
        table = pd.read_csv(path, dtype={"image": str, "model": str, "source_task": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame(columns=columns)
    table["pos"] = table["image"].map(pd.Series(np.arange(folder.n_images), index=folder.images))
    return table.dropna(subset=["pos"]).astype({"pos": "int64"})[columns]


def confusion_matrix(folder, model: str, positions=None) -> np.ndarray:
    """(C, C + 1) pixels of (ground-truth class, predicted class) summed over the images, the last column
    predictions of no class: semantic_confusion.csv's cells and semantic_stats.csv's intersections."""
    size = max(folder.classes.names, default=-1) + 1
    matrix = np.zeros((size, size + 1), dtype=np.int64)
    cells = _select(_confusion_rows(folder), folder.n_images, [model], positions)
    columns = np.where(cells["pred_category_id"].to_numpy() < 0, size, cells["pred_category_id"].to_numpy())
    np.add.at(matrix, (cells["gt_category_id"].to_numpy(), columns), cells["pixels"].to_numpy())
    diagonal = _semantic_sums(folder, [model], positions)
    matrix[diagonal["category_id"].to_numpy(), diagonal["category_id"].to_numpy()] = diagonal["intersection"]
    return matrix


def confusion_label(folder, class_id: int) -> str:
    """A class name, or "no class" for -1."""
    return NO_CLASS_LABEL if class_id < 0 else folder.classes.label(class_id)


def top_confusions(folder, model: str, positions=None, top_n: int = 20) -> pd.DataFrame:
    """The largest off-diagonal cells: ground-truth class, what it was predicted as, pixels, their share of the
    class's ground-truth pixels, and in how many images it happens."""
    cells = _select(_confusion_rows(folder), folder.n_images, [model], positions)
    grouped = cells.groupby(["gt_category_id", "pred_category_id"]).agg(pixels=("pixels", "sum"),
                                                                        images=("pos", "nunique")).reset_index()
    grouped = grouped.sort_values(["pixels", "gt_category_id", "pred_category_id"],
                                  ascending=[False, True, True]).head(top_n)
    gt_pixels = confusion_matrix(folder, model, positions).sum(axis=1)
    return pd.DataFrame({
        "ground truth": [confusion_label(folder, c) for c in grouped["gt_category_id"]],
        "predicted as": [confusion_label(folder, c) for c in grouped["pred_category_id"]],
        "pixels": grouped["pixels"].to_numpy(),
        "share of the class": grouped["pixels"].to_numpy() / np.maximum(gt_pixels[grouped["gt_category_id"]], 1),
        "images": grouped["images"].to_numpy(),
        "gt id": grouped["gt_category_id"].to_numpy(), "predicted id": grouped["pred_category_id"].to_numpy()})


def confusion_images(folder, model: str, gt_class: int, predicted: int, positions=None,
                     top_n: int | None = 20) -> pd.DataFrame:
    """The images where `model` predicts `predicted` (-1: no class) on ground-truth `gt_class` the most pixels,
    with that share of the class's pixels in the image."""
    cells = _select(_confusion_rows(folder), folder.n_images, [model], positions)
    cells = cells[(cells["gt_category_id"] == gt_class) & (cells["pred_category_id"] == predicted)]
    cells = cells.sort_values(["pixels", "pos"], ascending=[False, True])
    if top_n:
        cells = cells.head(top_n)
    stats = folder.semantic_stats
    stats = stats[(stats["model"] == model) & (stats["category_id"] == gt_class)].set_index("pos")["gt_pixels"]
    return pd.DataFrame({"image": [folder.images[p] for p in cells["pos"]], "model": model,
                         "ground truth": confusion_label(folder, gt_class),
                         "predicted as": confusion_label(folder, predicted),
                         "pixels": cells["pixels"].to_numpy(),
                         "share of the class in the image": cells["pixels"].to_numpy() /
                         np.maximum(stats.reindex(cells["pos"]).fillna(0).to_numpy(), 1),
                         "mIoU of the image": folder.image_metrics[model]["miou"].to_numpy()[cells["pos"]]})
