"""Builds the derived files of an output folder from its `panoptic/` folder, the source of truth.

`build_aggregates` writes `panoptic/gt.json`, `panoptic/<model>.json`, `segment_stats.csv`, `instance_counts.json`,
`analysis_stats.csv`, `segment_errors.csv` and `sweep.json` from the panoptic models' files, then the semantic and
instance files and `task_metrics.json` of every model (dump.task_aggregates). The dump calls it at the end with the PQ counts it
already computed; `--reindex` calls it with none, and then every count is recomputed from the PNGs. The error
analysis is read from the per-image analysis files; where one is missing (a folder of format version 1) or
unusable, it is computed from the PNGs and its file written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dump.folder import (
    AGGREGATE_FILES,
    ANALYSIS_STATS,
    ANALYSIS_STATS_COLUMNS,
    GT,
    INSTANCE_COUNTS,
    SEGMENT_ERRORS,
    SEGMENT_ERRORS_COLUMNS,
    SEGMENT_STATS,
    SEGMENT_STATS_COLUMNS,
    SWEEP,
    FolderError,
    Layout,
    csv_text,
    model_task,
    read_annotation,
    read_json_file,
    read_manifest,
)
from dump.sweep import SweepRecord, parse_sweep_record, sweep_summary
from dump.task_aggregates import build_task_aggregates
from dump.writer import write_analysis
from eomt import atomic
from metrics import pq
from metrics.analysis import FLOAT_COLUMNS, AnalysisCounts
from metrics.coco_panoptic import read_png
from metrics.errors import FN_TYPES, FP_TYPES
from metrics.instance_counts import instance_counts

CountsCache = dict[tuple[str, str], dict[int, pq.CategoryCounts]]
SEGMENT_TYPES = {"gt": FN_TYPES, "pred": FP_TYPES}


def coco_categories(classes: list[dict]) -> list[dict]:
    return [{"id": c["id"], "name": c["name"], "isthing": int(bool(c["isthing"])), "color": list(c["color"])}
            for c in classes]


@dataclass(frozen=True)
class PairAnalysis:
    """What the aggregates hold of one (image, model): PQ counts, analysis counts and the typed errors."""

    counts: dict[int, pq.CategoryCounts]
    analysis: AnalysisCounts
    segments: list[dict]


def parse_analysis_record(record) -> tuple[AnalysisCounts, list[dict]]:
    """The counts and segment errors of a per-image analysis file (metrics.analysis.ImageAnalysis.record());
    ValueError when it is malformed."""
    if not isinstance(record, dict) or not isinstance(record.get("classes"), dict) or \
            not isinstance(record.get("segments"), list):
        raise ValueError("not an analysis record (classes and segments)")
    counts = AnalysisCounts.from_rows({int(k): row for k, row in record["classes"].items()})
    for segment in record["segments"]:
        if not (isinstance(segment, dict) and segment.get("type") in SEGMENT_TYPES.get(segment.get("side"), ())
                and all(isinstance(segment.get(k), int) for k in ("id", "category_id", "linked_id"))):
            raise ValueError(f"malformed segment entry {segment!r}")
    return counts, record["segments"]


def _stored_analysis(layout: Layout, image: str, model: str) -> tuple[AnalysisCounts, list[dict]] | None:
    path = layout.analysis_json(image, model)
    if not path.exists():
        return None
    try:
        return parse_analysis_record(read_json_file(path))
    except (FolderError, ValueError):
        return None  # computed again from the PNGs and written anew


def pair_analysis(layout: Layout, image: str, model: str, gt_annotation: dict, pred_annotation: dict,
                  counts: dict[int, pq.CategoryCounts] | None) -> PairAnalysis:
    """One pair's numbers: the analysis from its file, or (with the PQ counts when not given) from the PNGs, and
    then its file is written."""
    stored = _stored_analysis(layout, image, model)
    if stored is not None and counts is not None:
        return PairAnalysis(counts, *stored)
    gt_map = read_png(layout.panoptic_png(image, GT))
    pred_map = read_png(layout.panoptic_png(image, model))
    if stored is None:
        counts, analysis = write_analysis(layout, image, model, gt_map, gt_annotation["segments_info"], pred_map,
                                          pred_annotation["segments_info"])
        stored = analysis.counts, analysis.segments()
    else:
        counts = pq.image_counts(gt_map, gt_annotation["segments_info"], pred_map, pred_annotation["segments_info"])
    return PairAnalysis(counts, *stored)


def _number(column: str, value) -> str | int:
    return repr(float(value)) if column in FLOAT_COLUMNS else int(value)


@dataclass(frozen=True)
class _Folder:
    layout: Layout
    classes: list[dict]
    models: list[str]
    images: list[str]
    image_info: list[dict]
    manifest: dict

    @property
    def names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.classes}

    @property
    def isthing(self) -> dict[int, bool]:
        return {c["id"]: bool(c["isthing"]) for c in self.classes}


def _open(root: str | Path) -> _Folder:
    manifest = read_manifest(root)
    layout = Layout(root, len(manifest["images"]))
    image_info = [{"id": entry["index"], "file_name": f"{layout.image_name(entry['index'])}.png",
                   "width": entry["width"], "height": entry["height"]} for entry in manifest["images"]]
    # The panoptic files are the panoptic models' (the other tasks' are dump.task_aggregates').
    return _Folder(layout, manifest["classes"], [m["name"] for m in manifest["models"] if model_task(m) == "panoptic"],
                   [layout.image_name(entry["index"]) for entry in manifest["images"]], image_info, manifest)


def _annotations(folder: _Folder) -> dict[str, dict[str, dict]]:
    annotations: dict[str, dict[str, dict]] = {source: {} for source in [GT, *folder.models]}
    for image in folder.images:
        for source in annotations:
            annotation = read_annotation(folder.layout, image, source)
            if annotation is not None:
                annotations[source][image] = annotation
    return annotations


def _write_coco_jsons(folder: _Folder, annotations: dict[str, dict[str, dict]]) -> None:
    categories = coco_categories(folder.classes)
    for source, by_image in annotations.items():
        if source == GT and not by_image:
            continue
        atomic.write_json(folder.layout.panoptic_json(source), {
            "info": {"description": f"{source} panoptic segmentation, COCO panoptic format", "source": source},
            "images": folder.image_info, "categories": categories,
            "annotations": [by_image[image] for image in folder.images if image in by_image]})


def _pair_analyses(folder: _Folder, annotations, counts_cache: CountsCache, progress, workers: int
                   ) -> dict[tuple[str, str], PairAnalysis]:
    """Every (image, model) with ground truth and prediction, in model-major order."""
    pairs = [(image, model) for model in folder.models for image in folder.images
             if image in annotations[GT] and image in annotations[model]]
    missing = sum(1 for pair in pairs if pair not in counts_cache or
                  not folder.layout.analysis_json(*pair).exists())
    if missing and progress:
        progress(f"computing PQ counts or error analysis for {missing} (image, model) pairs from panoptic/")

    def compute(pair):
        image, model = pair
        return pair, pair_analysis(folder.layout, image, model, annotations[GT][image], annotations[model][image],
                                   counts_cache.get(pair))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(compute, pairs))


def _per_image_pq(counts: dict[int, pq.CategoryCounts], names: dict, isthing: dict) -> dict:
    summary = pq.pq_summary(counts, isthing)
    per_class = summary["per_class"]
    return {"overall_pq": summary["All"]["pq"], "overall_sq": summary["All"]["sq"],
            "overall_rq": summary["All"]["rq"],
            "per_class_pq": {names[k]: v["pq"] for k, v in per_class.items()},
            "per_class_sq": {names[k]: v["sq"] for k, v in per_class.items()},
            "per_class_rq": {names[k]: v["rq"] for k, v in per_class.items()},
            "tp": sum(v["tp"] for v in per_class.values()),
            "fp": sum(v["fp"] for v in per_class.values()),
            "fn": sum(v["fn"] for v in per_class.values())}


def _dataset_level(counts: list[dict[int, pq.CategoryCounts]], names: dict, isthing: dict) -> dict:
    summary = pq.pq_summary(pq.sum_counts(counts), isthing)
    return {
        "pq": summary["All"]["pq"], "sq": summary["All"]["sq"], "rq": summary["All"]["rq"],
        "pq_things": summary["Things"]["pq"], "sq_things": summary["Things"]["sq"],
        "rq_things": summary["Things"]["rq"],
        "pq_stuff": summary["Stuff"]["pq"], "sq_stuff": summary["Stuff"]["sq"],
        "rq_stuff": summary["Stuff"]["rq"],
        "n_things": summary["Things"]["n"], "n_stuff": summary["Stuff"]["n"],
        "n_images": len(counts),
        "per_class": {names[k]: {key: v[key] for key in ("pq", "sq", "rq", "tp", "fp", "fn")}
                      for k, v in summary["per_class"].items()},
    }


def _write_stats(folder: _Folder, results: dict[tuple[str, str], PairAnalysis]) -> None:
    """segment_stats.csv, analysis_stats.csv and segment_errors.csv, image-major, models in manifest order."""
    stats, analysis, errors = [], [], []
    for image in folder.images:
        for model in folder.models:
            result = results.get((image, model))
            if result is None:
                continue
            for category_id, c in sorted(result.counts.items()):
                stats.append((image, model, category_id, c.tp, c.fp, c.fn, repr(float(c.iou_sum)), c.gt_segments,
                              c.pred_segments))
            for category_id, row in result.analysis.rows().items():
                analysis.append((image, model, category_id, *(_number(c, v) for c, v in row.items())))
            for s in result.segments:
                errors.append((image, model, s["side"], s["id"], s["category_id"], s["type"], s["linked_id"]))
    layout = folder.layout
    atomic.write_text(layout.file(SEGMENT_STATS), csv_text(SEGMENT_STATS_COLUMNS, stats))
    atomic.write_text(layout.file(ANALYSIS_STATS), csv_text(ANALYSIS_STATS_COLUMNS, analysis))
    atomic.write_text(layout.file(SEGMENT_ERRORS), csv_text(SEGMENT_ERRORS_COLUMNS, errors))


def _sweep_records(folder: _Folder, model: str, annotations) -> list[SweepRecord]:
    """The model's per-image sweep records of its most common grid, in image order (unreadable ones left out)."""
    records = []
    for image in folder.images:
        path = folder.layout.sweep_json(image, model)
        if image in annotations[GT] and image in annotations[model] and path.exists():
            try:
                records.append(parse_sweep_record(read_json_file(path)))
            except (FolderError, ValueError):
                continue
    if not records:
        return []
    grid = Counter(tuple(r.settings) for r in records).most_common(1)[0][0]
    return [r for r in records if tuple(r.settings) == grid]


def _write_sweep(folder: _Folder, annotations) -> None:
    """sweep.json: per model with sweep files, PQ/SQ/RQ per setting over the images of its most common grid."""
    models = {}
    for model in folder.models:
        records = _sweep_records(folder, model, annotations)
        if records:
            models[model] = {**sweep_summary(records, folder.isthing),
                             "images_with_ground_truth": sum(1 for image in annotations[model]
                                                             if image in annotations[GT])}
    atomic.write_json(folder.layout.file(SWEEP), {"models": models}, indent=1)


def _done(layout: Layout, source: str, images: list[str]) -> set[str]:
    """The images whose per-image annotation of `source` exists (one directory listing)."""
    try:
        names = {entry.name for entry in os.scandir(layout.panoptic_dir(source))}
    except OSError:
        return set()
    return {image for image in images if f"{image}.json" in names}


def aggregates_current(layout: Layout, manifest: dict) -> bool:
    """Whether the derived files cover every model and every image done. A run killed (or out of disk) between
    its last prediction and its aggregates leaves them stale, and the rerun, which has nothing left to predict,
    must still rebuild them. build_aggregates writes instance_counts.json last, so its models and image counts
    stand for every aggregate file."""
    models = [m["name"] for m in manifest["models"]]
    needed = [layout.file(name) for name in AGGREGATE_FILES] + [layout.panoptic_json(m) for m in models]
    if not all(path.exists() for path in needed):
        return False
    try:
        saved = json.loads(layout.file(INSTANCE_COUNTS).read_text())["dataset_level_metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(saved, dict) or set(saved) != set(models):
        return False
    images = [layout.image_name(entry["index"]) for entry in manifest["images"]]
    with_ground_truth = _done(layout, GT, images)
    return not with_ground_truth or all(
        (saved[model] or {}).get("n_images") == len(with_ground_truth & _done(layout, model, images))
        for model in models)


def build_aggregates(root: str | Path, counts_cache: CountsCache | None = None,
                     progress: Callable[[str], None] | None = None, workers: int = 4) -> dict:
    """Writes the derived files; returns the dataset-level metrics per model (None without ground truth)."""
    folder = _open(root)
    names, isthing = folder.names, folder.isthing
    annotations = _annotations(folder)
    has_gt = bool(annotations[GT])
    _write_coco_jsons(folder, annotations)
    results = _pair_analyses(folder, annotations, dict(counts_cache or {}), progress, workers)
    _write_stats(folder, results)
    _write_sweep(folder, annotations)

    per_image_pq = {f"{image}_pq_pred_{model}": _per_image_pq(results[(image, model)].counts, names, isthing)
                    for image in folder.images for model in folder.models if (image, model) in results}
    dataset_level = {model: _dataset_level([results[(image, model)].counts for image in folder.images
                                            if (image, model) in results], names, isthing) if has_gt else None
                     for model in folder.models}
    counts_per_image = {}
    for source, by_image in annotations.items():
        for image in folder.images:
            if image in by_image:
                label = f"{image}_target" if source == GT else f"{image}_pred_{source}"
                counts_per_image[label] = instance_counts(by_image[image]["segments_info"], names)
    build_task_aggregates(folder.layout, folder.manifest, dataset_level, workers)
    # Last: aggregates_current trusts this file's models, so it must not exist before the other files are done.
    atomic.write_json(folder.layout.file(INSTANCE_COUNTS), {
        "ground_truth": has_gt,
        "instance_counts": counts_per_image,
        "pq": per_image_pq,
        "dataset_level_metrics": dataset_level,
    })
    return dataset_level
