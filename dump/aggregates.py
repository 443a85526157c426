"""Builds the derived files of an output folder from its `panoptic/` folder, the source of truth.

`build_aggregates` writes `panoptic/gt.json`, `panoptic/<model>.json`, `segment_stats.csv` and
`instance_counts.json`. The dump calls it at the end with the counts it already computed; `--reindex` calls it
with none, and then every count is recomputed from the PNGs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dump.folder import (
    GT,
    INSTANCE_COUNTS,
    SEGMENT_STATS,
    SEGMENT_STATS_COLUMNS,
    Layout,
    read_annotation,
    read_manifest,
)
from eomt import atomic
from metrics import pq
from metrics.coco_panoptic import read_png
from metrics.instance_counts import instance_counts

CountsCache = dict[tuple[str, str], dict[int, pq.CategoryCounts]]


def coco_categories(classes: list[dict]) -> list[dict]:
    return [{"id": c["id"], "name": c["name"], "isthing": int(bool(c["isthing"])), "color": list(c["color"])}
            for c in classes]


def image_counts_from_files(layout: Layout, image: str, model: str, gt_annotation: dict,
                            pred_annotation: dict) -> dict[int, pq.CategoryCounts]:
    """PQ counts of one image for one model, from the PNGs and annotations in the folder."""
    gt_map = read_png(layout.panoptic_png(image, GT))
    pred_map = read_png(layout.panoptic_png(image, model))
    return pq.image_counts(gt_map, gt_annotation["segments_info"], pred_map, pred_annotation["segments_info"])


def _summary_fields(summary: dict) -> dict:
    return {"pq": summary["pq"], "sq": summary["sq"], "rq": summary["rq"], "n": summary["n"]}


def build_aggregates(root: str | Path, counts_cache: CountsCache | None = None,
                     progress: Callable[[str], None] | None = None, workers: int = 4) -> dict:
    """Writes the derived files; returns the dataset-level metrics per model (None without ground truth)."""
    manifest = read_manifest(root)
    layout = Layout(root, len(manifest["images"]))
    classes = manifest["classes"]
    names = {c["id"]: c["name"] for c in classes}
    isthing = {c["id"]: bool(c["isthing"]) for c in classes}
    models = [m["name"] for m in manifest["models"]]
    images = [layout.image_name(entry["index"]) for entry in manifest["images"]]
    categories = coco_categories(classes)
    image_info = [{"id": entry["index"], "file_name": f"{layout.image_name(entry['index'])}.png",
                   "width": entry["width"], "height": entry["height"]} for entry in manifest["images"]]

    annotations = {source: {} for source in [GT, *models]}
    for image in images:
        for source in annotations:
            annotation = read_annotation(layout, image, source)
            if annotation is not None:
                annotations[source][image] = annotation
    has_gt = bool(annotations[GT])
    for source, by_image in annotations.items():
        if source == GT and not has_gt:
            continue
        atomic.write_json(layout.panoptic_json(source), {
            "info": {"description": f"{source} panoptic segmentation, COCO panoptic format", "source": source},
            "images": image_info, "categories": categories,
            "annotations": [by_image[image] for image in images if image in by_image]})

    counts_cache = dict(counts_cache or {})
    missing = [(image, model) for model in models for image in images
               if image in annotations[GT] and image in annotations[model] and (image, model) not in counts_cache]
    if missing:
        if progress:
            progress(f"computing PQ counts for {len(missing)} (image, model) pairs from panoptic/")

        def compute(pair):
            image, model = pair
            return pair, image_counts_from_files(layout, image, model, annotations[GT][image],
                                                 annotations[model][image])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            counts_cache.update(pool.map(compute, missing))

    stats_rows = []
    per_image_pq: dict[str, dict] = {}
    dataset_level: dict[str, dict | None] = {}
    counts_by_model: dict[str, list] = {model: [] for model in models}
    for image in images:
        for model in models:
            counts = counts_cache.get((image, model))
            if counts is None or image not in annotations[GT] or image not in annotations[model]:
                continue
            counts_by_model[model].append(counts)
            for category_id in sorted(counts):
                c = counts[category_id]
                stats_rows.append((image, model, category_id, c.tp, c.fp, c.fn, repr(float(c.iou_sum)),
                                   c.gt_segments, c.pred_segments))
            summary = pq.pq_summary(counts, isthing)
            per_class = summary["per_class"]
            per_image_pq[f"{image}_pq_pred_{model}"] = {
                "overall_pq": summary["All"]["pq"], "overall_sq": summary["All"]["sq"],
                "overall_rq": summary["All"]["rq"],
                "per_class_pq": {names[k]: v["pq"] for k, v in per_class.items()},
                "per_class_sq": {names[k]: v["sq"] for k, v in per_class.items()},
                "per_class_rq": {names[k]: v["rq"] for k, v in per_class.items()},
                "tp": sum(v["tp"] for v in per_class.values()),
                "fp": sum(v["fp"] for v in per_class.values()),
                "fn": sum(v["fn"] for v in per_class.values()),
            }
    for model in models:
        if not has_gt:
            dataset_level[model] = None
            continue
        summary = pq.pq_summary(pq.sum_counts(counts_by_model[model]), isthing)
        dataset_level[model] = {
            "pq": summary["All"]["pq"], "sq": summary["All"]["sq"], "rq": summary["All"]["rq"],
            "pq_things": summary["Things"]["pq"], "sq_things": summary["Things"]["sq"],
            "rq_things": summary["Things"]["rq"],
            "pq_stuff": summary["Stuff"]["pq"], "sq_stuff": summary["Stuff"]["sq"],
            "rq_stuff": summary["Stuff"]["rq"],
            "n_things": summary["Things"]["n"], "n_stuff": summary["Stuff"]["n"],
            "n_images": len(counts_by_model[model]),
            "per_class": {names[k]: {key: v[key] for key in ("pq", "sq", "rq", "tp", "fp", "fn")}
                          for k, v in summary["per_class"].items()},
        }

    counts_per_image = {}
    for source, by_image in annotations.items():
        for image in images:
            if image in by_image:
                label = f"{image}_target" if source == GT else f"{image}_pred_{source}"
                counts_per_image[label] = instance_counts(by_image[image]["segments_info"], names)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SEGMENT_STATS_COLUMNS)
    writer.writerows(stats_rows)
    atomic.write_text(layout.file(SEGMENT_STATS), buffer.getvalue())
    atomic.write_json(layout.file(INSTANCE_COUNTS), {
        "ground_truth": has_gt,
        "instance_counts": counts_per_image,
        "pq": per_image_pq,
        "dataset_level_metrics": dataset_level,
    })
    return dataset_level
