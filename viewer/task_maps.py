"""What the semantic and instance tasks show of one image: label maps from the folder's semantic PNGs and instance
records, their error maps, and what the pixel inspector says of them.

- A semantic map (uint8, 255 = ignored / no class) is shown as a label map whose segments are its classes. A
  panoptic model's semantic map is its class map ("panoptic -> semantic").
- Instances are decoded from the COCO results of the image's record (RLE), drawn best score on top, those below
  the score slider left out. A panoptic model's instances are its thing segments with their scores.
- Error maps: semantic, per pixel correct / wrong class / no class / ignored; instance, COCOeval's matching at the
  chosen IoU among the instances shown (TP and FP predictions, FN objects, predictions on crowd regions ignored).

Decoded files are cached by (path, size, modification time), as viewer.labelmaps does for the panoptic PNGs.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from dump import records
from dump.folder import GT, PRESENCE_SCORE, FolderError, category_ids, read_json_file
from metrics import instance as instance_metrics
from metrics.semantic import IGNORE
from viewer.labelmaps import LabelMap, LabelMapError, label_map, load_label_map

SEMANTIC_LEGEND = (("ignored (ground truth unlabeled)", (40, 40, 40)), ("correct class", (0, 158, 115)),
                   ("wrong class", (213, 94, 0)), ("no class predicted", (0, 114, 178)))
INSTANCE_LEGEND = (("no object", (40, 40, 40)), ("TP: prediction matched", (0, 158, 115)),
                   ("FP: prediction unmatched", (213, 94, 0)), ("FN: object missed", (0, 114, 178)),
                   ("prediction on a crowd region (ignored)", (190, 190, 190)))
_CACHED = 16


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        raise LabelMapError(f"{path.name}: missing") from None
    return str(path), stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=48)
def _semantic_png(path: str, size: int, mtime_ns: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as png:
            semantic = np.asarray(png)
    except OSError as e:
        raise LabelMapError(f"{Path(path).name}: not a readable PNG ({e})") from None
    if semantic.ndim != 2 or semantic.dtype != np.uint8:
        raise LabelMapError(f"{Path(path).name}: a semantic map must be an 8-bit single-channel PNG")
    semantic.flags.writeable = False
    return semantic


def semantic_map(folder, pos: int, source: str) -> np.ndarray:
    """The uint8 semantic map of the ground truth or a model (a panoptic model's class map); LabelMapError when
    there is none."""
    image = folder.images[pos]
    if source != GT and folder.model_tasks[source] == "panoptic":
        return records.semantic_map(load_label_map(folder, pos, source).class_map)
    if source != GT and folder.model_tasks[source] != "semantic":
        raise LabelMapError(f"{source}: an {folder.model_tasks[source]} model has no semantic map")
    return _semantic_png(*_stat(folder.layout.semantic_png(image, source)))


def semantic_labels(semantic: np.ndarray) -> LabelMap:
    """A semantic map as a label map: one segment per class (ids class + 1), void where 255."""
    class_map = np.where(semantic == IGNORE, -1, semantic).astype(np.int32)
    present = np.unique(class_map[class_map >= 0]).tolist()
    return label_map(class_map + 1, [{"id": c + 1, "category_id": c, "isthing": 0, "area": None} for c in present])


def _class_of(folder) -> dict[int, int]:
    return {v: k for k, v in category_ids(folder.manifest).items()}


@lru_cache(maxsize=_CACHED)
def _instances(path: str, size: int, mtime_ns: int, class_of: tuple) -> tuple[tuple, tuple[dict, ...]]:
    """(results as stored, decoded instances best first) of an instance record."""
    try:
        results, _ = records.parse_instance_record(read_json_file(Path(path)))
        decoded = records.decode_results(results, dict(class_of))
    except (FolderError, ValueError, TypeError, KeyError) as e:
        raise LabelMapError(f"{Path(path).name}: not an instance record ({e})") from None
    for instance in decoded:
        instance["mask"].flags.writeable = False
    return tuple(results), tuple(decoded)


def instances(folder, pos: int, model: str) -> tuple[list[dict], list[dict]]:
    """(COCO results, instances {"mask", "category_id", "score"} best first) of a model's record of the image."""
    path = folder.layout.instance_json(folder.images[pos], model)
    results, decoded = _instances(*_stat(path), tuple(sorted(_class_of(folder).items())))
    return list(results), list(decoded)


@lru_cache(maxsize=_CACHED)
def _ground_truth(path: str, size: int, mtime_ns: int) -> tuple[dict, tuple[dict, ...], tuple[np.ndarray, ...]]:
    try:
        image, annotations = records.parse_instance_gt(read_json_file(Path(path)))
        masks = tuple(mask_utils.decode(instance_metrics.annotation_rle(a["segmentation"], image["height"],
                                                                        image["width"])).astype(bool)
                      for a in annotations)
    except (FolderError, ValueError, TypeError, KeyError) as e:
        raise LabelMapError(f"{Path(path).name}: not an instance ground truth record ({e})") from None
    return image, tuple(annotations), masks


def ground_truth_instances(folder, pos: int) -> tuple[dict, list[dict], list[np.ndarray]]:
    """(image entry, COCO annotations, their masks) of the image's instance ground truth."""
    image, annotations, masks = _ground_truth(*_stat(folder.layout.instance_json(folder.images[pos], GT)))
    return image, list(annotations), list(masks)


def instance_labels(found: list[dict], shape: tuple[int, int], min_score: float = PRESENCE_SCORE) -> LabelMap:
    """Instances scored at least `min_score` as a label map, the best on top (segment ids 1.. from the best)."""
    segment_map, segments = records.paint_instances(found, shape, min_score)
    return label_map(segment_map, segments)


def _shape(folder, pos: int) -> tuple[int, int]:
    entry = folder.manifest["images"][pos]
    if entry.get("height") is None:
        raise LabelMapError("the image's size is not in the manifest")
    return int(entry["height"]), int(entry["width"])


def prediction_labels(folder, pos: int, model: str, min_score: float = PRESENCE_SCORE) -> LabelMap | str:
    """What a model's panel shows, by its task; a string saying why when there is nothing to show."""
    try:
        task = folder.model_tasks[model]
        if task == "panoptic":
            return load_label_map(folder, pos, model)
        if not folder.has(model, pos):
            return f"{model}: no prediction for {folder.images[pos]}"
        if task == "semantic":
            return semantic_labels(semantic_map(folder, pos, model))
        return instance_labels(instances(folder, pos, model)[1], _shape(folder, pos), min_score)
    except LabelMapError as e:
        return str(e)


def ground_truth_labels(folder, pos: int) -> LabelMap | str | None:
    """The ground truth panel: the panoptic ground truth, else the semantic one, else the instances; None when
    the folder has no ground truth at all."""
    if not any(t.any() for t in folder.truth.values()):
        return None
    if folder.truth["panoptic"].any():
        try:
            return load_label_map(folder, pos, GT)
        except LabelMapError as e:  # its message names the ground truth
            return str(e)
    try:
        if folder.truth["semantic"][pos]:
            return semantic_labels(semantic_map(folder, pos, GT))
        if folder.truth["instance"][pos]:
            image, annotations, masks = ground_truth_instances(folder, pos)
            class_of = _class_of(folder)
            found = [{"mask": m, "category_id": class_of.get(a["category_id"], -1), "score": 1.0}
                     for a, m in zip(annotations, masks, strict=True)]
            return instance_labels(found, (image["height"], image["width"]), 0.0)
        return f"ground truth: none for {folder.images[pos]}"
    except LabelMapError as e:
        return f"ground truth: {e}"


# ----------------------------------------------------------------------------------------------------- errors

def semantic_codes(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per pixel an index into SEMANTIC_LEGEND: 0 ignored, 1 correct, 2 wrong class, 3 no class predicted."""
    if gt.shape != pred.shape:
        raise LabelMapError(f"the semantic maps differ in size ({gt.shape} vs {pred.shape})")
    codes = np.where(pred == gt, 1, np.where(pred == IGNORE, 3, 2)).astype(np.uint8)
    codes[gt == IGNORE] = 0
    return codes


def instance_matches(folder, pos: int, model: str, iou: float, min_score: float):
    """(instances shown with their status "TP" / "FP" / "ignored", ground-truth masks with "TP" / "FN" /
    "crowd"): COCOeval's matching at `iou` among the model's thing instances scored at least `min_score`."""
    image, annotations, masks = ground_truth_instances(folder, pos)
    results, found = instances(folder, pos, model)
    things = {c.id for c in folder.classes if c.isthing}
    order = sorted(range(len(results)), key=lambda k: -float(results[k]["score"]))
    class_of = _class_of(folder)
    shown = [k for k in order if results[k]["score"] >= min_score and class_of.get(results[k]["category_id"]) in things]
    status, gt_status = instance_metrics.image_matches(annotations, [results[k] for k in shown], image["height"],
                                                      image["width"], iou)
    by_result = {k: rank for rank, k in enumerate(order)}
    return [(found[by_result[k]], s) for k, s in zip(shown, status, strict=True)], list(zip(masks, gt_status,
                                                                                            strict=True))


def instance_codes(folder, pos: int, model: str, iou: float, min_score: float) -> np.ndarray:
    """Per pixel an index into INSTANCE_LEGEND: missed objects first, then the predictions shown from the worst
    score to the best, so the best is on top."""
    shown, truths = instance_matches(folder, pos, model, iou, min_score)
    codes = np.zeros(_shape(folder, pos), dtype=np.uint8)
    for mask, status in truths:
        if status == "FN":
            codes[mask] = 3
    for instance, status in reversed(shown):
        codes[instance["mask"]] = {"TP": 1, "FP": 2}.get(status, 4)
    return codes


# -------------------------------------------------------------------------------------------------- inspector

def inspector_row(folder, pos: int, model: str, x: int, y: int, class_label, iou: float = 0.5,
                  min_score: float = PRESENCE_SCORE) -> dict:
    """The pixel inspector's row of a semantic or instance model at (x, y)."""
    task = folder.model_tasks[model]
    row = {"source": f"{model} ({task})"}
    try:
        if task in ("semantic", "panoptic"):  # a panoptic model: its class map
            pred = int(semantic_map(folder, pos, model)[y, x])
            row["class"] = "no class" if pred == IGNORE else class_label(pred)
            if folder.truth["semantic"][pos]:
                gt = int(semantic_map(folder, pos, GT)[y, x])
                row["this segment"] = "ignored (ground truth unlabeled)" if gt == IGNORE else \
                    "correct" if gt == pred else f"wrong: ground truth is {class_label(gt)}"
            return row
        if folder.truth["instance"][pos]:
            shown, _ = instance_matches(folder, pos, model, iou, min_score)
        else:
            shown = [(i, "") for i in instances(folder, pos, model)[1] if i["score"] >= min_score]
        here = [(rank, inst, status) for rank, (inst, status) in enumerate(shown) if inst["mask"][y, x]]
        if not here:
            return {**row, "class": "no instance (scored ≥ the slider)"}
        rank, inst, status = here[0]
        return {**row, "class": class_label(inst["category_id"]), "segment": rank + 1,
                "area": int(inst["mask"].sum()), "score": round(inst["score"], 4),
                "this segment": f"{status} at IoU {iou:g}" if status else ""}
    except (LabelMapError, IndexError) as e:
        return {**row, "class": str(e)}
