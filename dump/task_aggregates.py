"""The semantic and instance aggregate files of an output folder, from the per-image task records (dump.records):

    semantic_stats.csv     per (image, model, class): intersection, union, gt_pixels, pred_pixels
    semantic_confusion.csv per (image, model): every off-diagonal cell of its confusion matrix
    semantic/<model>.json  the model's confusion matrix summed over the images (ground truth x prediction, pixels)
    instance/gt.json       COCO instance ground truth assembled from instance/gt/ (annotation ids 1..N)
    instance/<model>.json  the model's COCO results assembled from instance/<model>/
    instance_stats.csv     per (image, model, class): TP/FP/FN at IoU 0.5 and 0.75, ground-truth and predicted
                           instances (scored from PRESENCE_SCORE), the image's own AP at 0.5 and 0.75
    task_metrics.json      per model and task: mIoU/fwIoU/aAcc/mAcc, mask AP (pycocotools' numbers) with TIDE and
                           calibration (hotcoco), PQ; each with the task its prediction comes from

A panoptic model's records are its class map and thing segments; where one is missing or unusable (a folder
written before these files existed, a damaged file) it is computed from the panoptic PNG and written. An instance
record written before per-image APs gets them here (and is rewritten).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dump import records
from dump.folder import (
    GT,
    INSTANCE_STATS,
    INSTANCE_STATS_COLUMNS,
    PRESENCE_SCORE,
    SEMANTIC_CONFUSION,
    SEMANTIC_CONFUSION_COLUMNS,
    SEMANTIC_STATS,
    SEMANTIC_STATS_COLUMNS,
    TASK_METRICS,
    FolderError,
    Layout,
    category_ids,
    csv_text,
    image_id,
    model_task,
    read_annotation,
    read_json_file,
)
from eomt import atomic
from eomt.render import segments_to_class_map
from metrics import instance as instance_metrics
from metrics import semantic as semantic_metrics
from metrics.coco_panoptic import read_png


@dataclass(frozen=True)
class TaskFolder:
    """What the task aggregates need of a folder's manifest."""

    layout: Layout
    images: list[str]
    image_ids: dict[str, int]  # image name -> its id in the instance files
    tasks: dict[str, str]  # model -> the task it ran
    classes: list[dict]
    category_ids: dict[int, int]  # class id -> instance files' category id

    @classmethod
    def from_manifest(cls, layout: Layout, manifest: dict) -> TaskFolder:
        entries = manifest["images"]
        images = [layout.image_name(e["index"]) for e in entries]
        return cls(layout, images, {name: image_id(e) for name, e in zip(images, entries, strict=True)},
                   {m["name"]: model_task(m) for m in manifest["models"]}, manifest["classes"],
                   category_ids(manifest))

    @property
    def things(self) -> frozenset[int]:
        return frozenset(int(c["id"]) for c in self.classes if c["isthing"])

    @property
    def num_classes(self) -> int:
        return max((int(c["id"]) for c in self.classes), default=-1) + 1


def _read(path, parse):
    """A parsed per-image record, or None when the file is missing or unusable."""
    if not path.exists():
        return None
    try:
        return parse(read_json_file(path))
    except (FolderError, ValueError, TypeError, KeyError):
        return None


def _panoptic_prediction(folder: TaskFolder, image: str, model: str):
    """(segment map, segments_info) of a finished panoptic prediction; None while it is not done."""
    annotation = read_annotation(folder.layout, image, model)
    if annotation is None:
        return None
    return read_png(folder.layout.panoptic_png(image, model)), annotation["segments_info"]


def _semantic_gt(folder: TaskFolder, image: str) -> np.ndarray | None:
    path = folder.layout.semantic_png(image, GT)
    return read_png_gray(path) if path.exists() else None


def read_png_gray(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as png:
        return np.asarray(png)


def semantic_cells(folder: TaskFolder, image: str, model: str) -> list[tuple[int, int, int]] | None:
    """The confusion cells of a (image, model): from its record, else (a panoptic model, where the image has
    semantic ground truth) from its class map, whose record is then written. None without a prediction or semantic
    ground truth."""
    path = folder.layout.semantic_json(image, model)
    stored = _read(path, lambda r: (records.confusion_cells(r),))
    if stored is not None:
        return stored[0]
    gt = _semantic_gt(folder, image)
    prediction = _panoptic_prediction(folder, image, model) if folder.tasks[model] == "panoptic" else None
    if prediction is None or gt is None:
        return None
    class_map = records.semantic_map(segments_to_class_map(*prediction))
    record = records.semantic_record(gt, class_map, folder.num_classes, "panoptic")
    atomic.write_json(path, record)
    return records.confusion_cells(record)


def instance_gt(folder: TaskFolder, image: str) -> tuple[dict, list[dict]] | None:
    return _read(folder.layout.instance_json(image, GT), records.parse_instance_gt)


def instance_results(folder: TaskFolder, image: str, model: str) -> tuple[list[dict], dict | None] | None:
    """(results, counts) of a (image, model): from its record, else (a panoptic model, where the image has instance
    ground truth) from its thing segments, whose record is then written. None without a prediction."""
    path = folder.layout.instance_json(image, model)
    stored = _read(path, records.parse_instance_record)
    if stored is not None:
        return _with_aps(folder, path, image, *stored)
    gt = instance_gt(folder, image)
    prediction = _panoptic_prediction(folder, image, model) if folder.tasks[model] == "panoptic" else None
    if prediction is None or gt is None:
        return None
    record = records.instance_record(folder.image_ids[image], records.thing_instances(*prediction),
                                     folder.category_ids, "panoptic", gt, folder.things)
    atomic.write_json(path, record)
    return records.parse_instance_record(record)


def _with_aps(folder: TaskFolder, path, image: str, results: list[dict], counts: dict | None):
    """(results, counts) of a record; one written before per-image APs gets them, and is rewritten with them."""
    gt = None if records.has_aps(counts) else instance_gt(folder, image)
    if gt is None:
        return results, counts
    counts = records.result_counts(results, folder.category_ids, gt, folder.things)
    record = json.loads(path.read_text())
    atomic.write_json(path, {**record, "counts": counts})
    return results, counts


# ----------------------------------------------------------------------------------------------------- semantic

def _semantic_summary(matrix: np.ndarray, n_images: int, source_task: str) -> dict:
    summary = semantic_metrics.summary(semantic_metrics.ClassCounts.from_confusion(matrix))
    per_class = {str(c): {"iou": v["iou"], "acc": v["acc"]} for c, v in summary.pop("per_class").items()
                 if v["union"] > 0}
    return {"source_task": source_task, "images": n_images, **summary, "per_class": per_class}


def write_semantic(folder: TaskFolder, workers: int) -> dict[str, dict | None]:
    """semantic_stats.csv, semantic_confusion.csv and each model's confusion matrix; the metrics per model."""
    n = folder.num_classes
    pairs = [(image, model) for model in folder.tasks for image in folder.images]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        cells = dict(zip(pairs, pool.map(lambda pair: semantic_cells(folder, *pair), pairs), strict=True))
    stats, confusion, metrics = [], [], {}
    for model, task in folder.tasks.items():
        matrix, counted = np.zeros((n, n + 1), dtype=np.int64), 0
        for image in folder.images:
            found = cells[(image, model)]
            if found is None:
                continue
            image_matrix = records.confusion_matrix(found, n)
            matrix += image_matrix
            counted += 1
            for r in semantic_metrics.ClassCounts.from_confusion(image_matrix).records():
                stats.append((image, model, task, r["category_id"], r["intersection"], r["union"], r["gt_pixels"],
                              r["pred_pixels"]))
            confusion += [(image, model, task, g, p, pixels) for g, p, pixels in found if g != p]
        metrics[model] = _semantic_summary(matrix, counted, task) if counted else None
        if counted:
            atomic.write_json(folder.layout.confusion_json(model), {
                "model": model, "source_task": task, "images": counted, "classes": list(range(n)),
                "columns": f"predicted class 0..{n - 1}, then no class", "matrix": matrix.tolist()})
    atomic.write_text(folder.layout.file(SEMANTIC_STATS), csv_text(SEMANTIC_STATS_COLUMNS, _image_order(folder, stats)))
    atomic.write_text(folder.layout.file(SEMANTIC_CONFUSION),
                      csv_text(SEMANTIC_CONFUSION_COLUMNS, _image_order(folder, confusion)))
    return metrics


# ----------------------------------------------------------------------------------------------------- instance

def _coco_categories(folder: TaskFolder) -> list[dict]:
    return [{"id": folder.category_ids[int(c["id"])], "name": c["name"]} for c in folder.classes if c["isthing"]]


def _ground_truth_document(folder: TaskFolder, truths: dict[str, tuple[dict, list[dict]]], images) -> dict:
    annotations = [a for image in images for a in truths[image][1]]
    return {"images": [truths[image][0] for image in images], "categories": _coco_categories(folder),
            "annotations": [{**a, "id": k} for k, a in enumerate(annotations, start=1)]}


def _instance_rows(folder: TaskFolder, image: str, model: str, gt: tuple[dict, list[dict]], results, counts):
    class_of = {v: k for k, v in folder.category_ids.items()}
    gt_instances, pred_instances = {}, {}
    for a in gt[1]:
        if not a.get("iscrowd", 0):
            gt_instances[class_of[a["category_id"]]] = gt_instances.get(class_of[a["category_id"]], 0) + 1
    for r in results:
        if r["score"] >= PRESENCE_SCORE and class_of.get(r["category_id"]) in folder.things:
            c = class_of[r["category_id"]]
            pred_instances[c] = pred_instances.get(c, 0) + 1
    rows = []
    for c in sorted({int(k) for key in counts for k in counts[key]} | set(gt_instances) | set(pred_instances)):
        # [tp, fp, fn, ap] (instance_results gave every record its APs); a class without a match at one threshold
        # has no entry there.
        at50, at75 = (counts[key].get(str(c)) or [0, 0, 0, None] for key in ("0.5", "0.75"))
        rows.append((image, model, folder.tasks[model], c, *at50[:3], *at75[:3], gt_instances.get(c, 0),
                     pred_instances.get(c, 0), at50[3], at75[3]))
    return rows


def _mask_ap(folder: TaskFolder, truths, results: dict[str, list[dict]], task: str) -> dict | None:
    images = [image for image in folder.images if image in truths and image in results]
    if not images:
        return None
    document = _ground_truth_document(folder, truths, images)
    # pycocotools leaves out results of categories the ground truth does not list (a panoptic model run as an
    # instance one also ranks stuff classes); mask_ap refuses them, so they are left out here.
    known = {c["id"] for c in document["categories"]}
    summary = instance_metrics.mask_ap(document, [r for image in images for r in results[image]
                                                  if r["category_id"] in known], diagnostics=True)
    class_of = {v: k for k, v in folder.category_ids.items()}
    per_class = {str(class_of[c]): ap for c, ap in summary.pop("per_class").items()}
    return {"source_task": task, "images": len(images), **summary, "per_class": per_class}


def write_instance(folder: TaskFolder, workers: int) -> dict[str, dict | None]:
    """instance/gt.json, instance/<model>.json and instance_stats.csv; mask AP per model."""
    layout = folder.layout
    truths = {image: gt for image in folder.images if (gt := instance_gt(folder, image)) is not None}
    if truths:
        atomic.write_json(layout.coco_instance_json(GT), _ground_truth_document(folder, truths, list(truths)))
    stats, metrics = [], {}
    for model, task in folder.tasks.items():  # one model at a time: a COCO-sized model's results take 100s of MB
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = dict(zip(folder.images, pool.map(instance_results, [folder] * len(folder.images),
                                                     folder.images, [model] * len(folder.images)), strict=True))
        results = {image: pair[0] for image, pair in found.items() if pair is not None}
        if results:
            atomic.write_json(layout.coco_instance_json(model), [r for image in folder.images
                                                                  for r in results.get(image, [])])
        for image, pair in found.items():
            if pair is not None and pair[1] is not None and image in truths:
                stats += _instance_rows(folder, image, model, truths[image], *pair)
        metrics[model] = _mask_ap(folder, truths, results, task)
    atomic.write_text(layout.file(INSTANCE_STATS), csv_text(INSTANCE_STATS_COLUMNS, _image_order(folder, stats)))
    return metrics


# ------------------------------------------------------------------------------------------------------- shared

def _image_order(folder: TaskFolder, rows: list[tuple]) -> list[tuple]:
    """Rows image-major (models in manifest order, as they were made per model)."""
    position = {image: k for k, image in enumerate(folder.images)}
    order = {model: k for k, model in enumerate(folder.tasks)}
    return sorted(rows, key=lambda r: (position[r[0]], order[r[1]]))


def _panoptic_metrics(level: dict | None) -> dict | None:
    if not level or not level.get("n_images"):
        return None
    keys = ("pq", "sq", "rq", "pq_things", "sq_things", "rq_things", "pq_stuff", "sq_stuff", "rq_stuff")
    return {"source_task": "panoptic", "images": level["n_images"], **{k: level[k] for k in keys}}


def build_task_aggregates(layout: Layout, manifest: dict, dataset_level: dict, workers: int = 4) -> dict:
    """Writes the semantic and instance aggregate files and task_metrics.json; returns its "models"."""
    folder = TaskFolder.from_manifest(layout, manifest)
    semantic = write_semantic(folder, workers)
    instance = write_instance(folder, workers)
    models = {model: {"task": task, "panoptic": _panoptic_metrics((dataset_level or {}).get(model)),
                      "semantic": semantic[model], "instance": instance[model]}
              for model, task in folder.tasks.items()}
    atomic.write_json(layout.file(TASK_METRICS), {"models": models}, indent=1)
    return models
