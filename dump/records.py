"""The per-image task records of an output folder: what they hold, how the dump makes them from a prediction and
how readers take them back (numpy and pycocotools only: the viewer reads them too).

    semantic/<model>/val_XXXX.json  {"source_task", "confusion": [[gt class, predicted class, pixels], ...] | null}
                                    nonzero cells of the image's confusion matrix; predicted class NO_CLASS (-1) for
                                    pixels predicted as no class; null without semantic ground truth
    instance/gt/val_XXXX.json       {"image": {"id", "file_name", "width", "height"}, "annotations": [...]}
                                    COCO instance annotations of the image (the dataset's own, else derived from
                                    the panoptic ground truth), with the instance files' category ids
    instance/<model>/val_XXXX.json  {"image_id", "source_task", "results": [...], "counts": {"0.5" | "0.75":
                                    {"<class id>": [tp, fp, fn]}} | null}: the image's COCO results (top 100, RLE,
                                    no bbox) and COCOeval's TP/FP/FN per class at IoU 0.5 and 0.75

Category ids inside COCO results and annotations are the instance files' (dump.folder.category_ids); everywhere
else they are the class ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from dump.folder import NO_CLASS, PRESENCE_SCORE
from eomt.config import SCORE_DIGITS
from metrics import instance as instance_metrics
from metrics import semantic as semantic_metrics

THRESHOLD_KEYS = {"0.5": 0.5, "0.75": 0.75}


# ----------------------------------------------------------------------------------------------------- semantic

def semantic_record(gt: np.ndarray | None, pred: np.ndarray, num_classes: int, source_task: str) -> dict:
    """The per-image semantic record of a prediction (a uint8 map, 255 = no class) against `gt` (None: none)."""
    if gt is None:
        return {"source_task": source_task, "confusion": None}
    matrix = semantic_metrics.confusion(gt, pred, num_classes)
    rows, cols = np.nonzero(matrix)
    cells = [[int(r), NO_CLASS if c == num_classes else int(c), int(matrix[r, c])]
             for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    return {"source_task": source_task, "confusion": cells}


def confusion_cells(record) -> list[tuple[int, int, int]] | None:
    """The (gt class, predicted class, pixels) cells of a semantic record; None without ground truth. ValueError
    for a malformed record."""
    if not isinstance(record, dict) or "confusion" not in record:
        raise ValueError("not a semantic record (no 'confusion')")
    cells = record["confusion"]
    if cells is None:
        return None
    if not isinstance(cells, list) or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) for v in c)
                                              for c in cells):
        raise ValueError("'confusion' must be a list of [gt class, predicted class, pixels]")
    return [tuple(c) for c in cells]


def confusion_matrix(cells: Sequence[tuple[int, int, int]], num_classes: int) -> np.ndarray:
    """(C, C + 1) matrix of cells (last column: no class), as metrics.semantic.confusion gives it."""
    matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for gt, pred, pixels in cells:
        matrix[gt, num_classes if pred == NO_CLASS else pred] += pixels
    return matrix


def semantic_map(class_map: np.ndarray) -> np.ndarray:
    """A prediction's class map (negative = void, or a semantic model's int map) as a uint8 semantic map."""
    return semantic_metrics.semantic_from_class_map(class_map)


# ----------------------------------------------------------------------------------------------------- instance

def ground_truth_annotations(sample, image_id: int, category_ids: Mapping[int, int]) -> list[dict] | None:
    """The image's COCO instance annotations with the files' category ids: the dataset's own when it has them,
    else one per thing segment of the panoptic ground truth (crowd kept, area = pixels); None when neither."""
    if sample.instances is not None:
        annotations = [{k: v for k, v in a.items() if k != "id"} for a in sample.instances]
    elif sample.segment_map is not None:
        annotations = [{k: v for k, v in a.items() if k != "id"} for a in
                       instance_metrics.annotations_from_panoptic(sample.segment_map, sample.segments, image_id)]
    else:
        return None
    return [{**a, "image_id": image_id, "category_id": int(category_ids[int(a["category_id"])])}
            for a in annotations]


def instance_gt_record(image: dict, annotations: list[dict]) -> dict:
    return {"image": image, "annotations": annotations}


def parse_instance_gt(record) -> tuple[dict, list[dict]]:
    """(image entry, annotations) of an instance ground-truth record; ValueError when malformed."""
    if not isinstance(record, dict) or not isinstance(record.get("image"), dict) or \
            not isinstance(record.get("annotations"), list):
        raise ValueError("not an instance ground-truth record (image and annotations)")
    image = record["image"]
    if not all(isinstance(image.get(k), int) for k in ("id", "width", "height")):
        raise ValueError("the image entry needs an int id, width and height")
    return image, record["annotations"]


def instance_record(image_id: int, instances: Sequence[Mapping], category_ids: Mapping[int, int], source_task: str,
                    gt: tuple[dict, list[dict]] | None, things: set[int] | frozenset[int]) -> dict:
    """The per-image instance record of predicted instances ({"mask", "category_id", "score"}): COCO results of
    the top 100 and their `result_counts`."""
    ids = [category_ids[c] for c in range(max(category_ids, default=-1) + 1)] if category_ids else None
    results = instance_metrics.results_from_instances(image_id, instances, ids)
    return {"image_id": image_id, "source_task": source_task, "results": results,
            "counts": result_counts(results, category_ids, gt, things)}


def result_counts(results: Sequence[Mapping], category_ids: Mapping[int, int], gt: tuple[dict, list[dict]] | None,
                  things: set[int] | frozenset[int]) -> dict | None:
    """Against the ground truth record's (image, annotations): {"0.5" | "0.75": {class id: [TP, FP, FN, the
    image's own AP or None]}} per thing class, as COCOeval, which evaluates the ground truth's categories only (a
    stuff class ranked by a panoptic model run as an instance one is in the results, not in the counts); None
    without ground truth."""
    if gt is None:
        return None
    image, annotations = gt
    by_file_id = {v: k for k, v in category_ids.items()}
    counted = [r for r in results if by_file_id.get(r["category_id"]) in things]
    found = instance_metrics.image_counts(annotations, counted, image["height"], image["width"])
    return {key: {str(by_file_id[c]): [m.tp, m.fp, m.fn, m.ap] for c, m in sorted(found[t].items())}
            for key, t in THRESHOLD_KEYS.items()}


def has_aps(counts: dict | None) -> bool:
    """Whether a record's counts hold the per-image APs (records written before them hold three numbers)."""
    return counts is None or all(len(entry) == 4 for key in counts for entry in counts[key].values())


def parse_instance_record(record) -> tuple[list[dict], dict | None]:
    """(results, counts) of an instance record; ValueError when malformed."""
    if not isinstance(record, dict) or not isinstance(record.get("results"), list) or "counts" not in record:
        raise ValueError("not an instance record (results and counts)")
    for r in record["results"]:
        if not (isinstance(r, dict) and isinstance(r.get("category_id"), int) and
                isinstance(r.get("score"), (int, float)) and isinstance(r.get("segmentation"), dict)):
            raise ValueError(f"malformed result {str(r)[:80]}")
    counts = record["counts"]
    if counts is not None and not (isinstance(counts, dict) and set(counts) == set(THRESHOLD_KEYS)):
        raise ValueError("'counts' must hold the thresholds 0.5 and 0.75")
    return record["results"], counts


def decode_results(results: Sequence[Mapping], class_of: Mapping[int, int]) -> list[dict]:
    """COCO results as instances {"mask" (H, W) bool, "category_id" (class id), "score"}, best score first."""
    order = sorted(range(len(results)), key=lambda k: -float(results[k]["score"]))
    return [{"mask": mask_utils.decode(results[k]["segmentation"]).astype(bool),
             "category_id": class_of.get(int(results[k]["category_id"]), -1), "score": float(results[k]["score"])}
            for k in order]


def paint_instances(instances: Sequence[Mapping], shape: tuple[int, int],
                    min_score: float = PRESENCE_SCORE) -> tuple[np.ndarray, list[dict]]:
    """A segment map (0 = void) of the instances scored at least `min_score`, the best on top, and its segments
    ({"id", "category_id", "isthing", "score", "area"}, ids 1..n from the best)."""
    kept = sorted((k for k, inst in enumerate(instances) if inst["score"] >= min_score),
                  key=lambda k: -instances[k]["score"])
    segment_map = np.zeros(shape, dtype=np.int32)
    for rank in range(len(kept), 0, -1):  # the worst first, so that better ones paint over it
        segment_map[instances[kept[rank - 1]]["mask"]] = rank
    areas = np.bincount(segment_map.ravel(), minlength=len(kept) + 1)
    segments = [{"id": rank + 1, "category_id": int(instances[k]["category_id"]), "isthing": 1,
                 "score": round(float(instances[k]["score"]), SCORE_DIGITS), "area": int(areas[rank + 1])}
                for rank, k in enumerate(kept)]
    return segment_map, [s for s in segments if s["area"] > 0]


def thing_instances(segment_map: np.ndarray, segments: Sequence[Mapping]) -> list[dict]:
    """A panoptic prediction's thing segments as instances (score = the segment's)."""
    return instance_metrics.instances_from_panoptic(segment_map, segments)
