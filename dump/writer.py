"""Writes the files of one image: its data (input, ground truth) and one model's prediction.

Each function writes its per-image annotation JSON last, so its presence means every file of that image is there:
for a prediction with ground truth, that includes its error analysis and, when sweeping, its sweep counts.
"""

from __future__ import annotations

import numpy as np

from dump.folder import (
    GT,
    FolderError,
    Layout,
    read_annotation,
    read_json_file,
    write_annotation,
    write_panoptic_png,
)
from dump.sweep import SweepGrid, SweepMaps, parse_sweep_record, sweep_counts, sweep_record
from eomt import atomic
from eomt.render import render_panoptic, segments_to_class_map
from metrics import pq
from metrics.analysis import ImageAnalysis, analyze_image
from metrics.coco_panoptic import areas_and_bboxes, read_png
from segdata.ade20k import DatasetError


def data_done(layout: Layout, image: str, with_ground_truth: bool) -> bool:
    if with_ground_truth:
        return layout.annotation_json(image, GT).exists()
    return layout.input_png(image).exists()


def write_data(layout: Layout, index: int, dataset, colors: np.ndarray, with_ground_truth: bool) -> None:
    """Input picture, and with ground truth its render and COCO panoptic files. Raises the reader's error.

    When only the annotation is unusable the input is still written, so that the image is predicted (and
    reported as failed for its ground truth)."""
    image_name = layout.image_name(index)
    if not with_ground_truth:
        atomic.write_png(layout.input_png(image_name), dataset.read_image(index))
        return
    try:
        sample = dataset[index]
    except DatasetError:
        atomic.write_png(layout.input_png(image_name), dataset.read_image(index))
        raise
    atomic.write_png(layout.input_png(image_name), sample.image)
    class_map = segments_to_class_map(sample.segment_map, sample.segments)
    atomic.write_png(layout.target_png(image_name), render_panoptic(class_map, sample.segment_map, colors))
    write_panoptic_png(layout.panoptic_png(image_name, GT), sample.segment_map)
    segments_info = [{"id": int(s["id"]), "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0)),
                      "isthing": int(bool(s["isthing"])), "area": int(s["area"]), "bbox": [int(v) for v in s["bbox"]]}
                     for s in sample.segments]
    write_annotation(layout, image_name, GT, {"image_id": index, "file_name": f"{image_name}.png",
                                              "segments_info": segments_info})


def prediction_done(layout: Layout, image: str, model: str, sweep: SweepGrid | None = None) -> bool:
    """The image's prediction is written; when sweeping, also its sweep counts over this grid (an image with
    ground truth whose sweep file is missing or has other settings is predicted again)."""
    if not layout.annotation_json(image, model).exists():
        return False
    if sweep is None or not layout.annotation_json(image, GT).exists():
        return True
    return sweep_settings(layout, image, model) == sweep.settings


def sweep_settings(layout: Layout, image: str, model: str) -> list[tuple[float, float]] | None:
    """The settings of an image's sweep file; None when it is missing or unreadable."""
    path = layout.sweep_json(image, model)
    if not path.exists():
        return None
    try:
        return parse_sweep_record(read_json_file(path)).settings
    except (FolderError, ValueError):
        return None


def write_prediction(layout: Layout, index: int, model: str, result, colors: np.ndarray,
                     with_ground_truth: bool, sweep: SweepMaps | None = None) -> dict[int, pq.CategoryCounts] | None:
    """Render, COCO panoptic PNG and annotation of one prediction; with ground truth in the folder for this image,
    also its error analysis and (with `sweep`) the sweep's counts. Returns its PQ counts against the ground
    truth (None when there is none for this image)."""
    image_name = layout.image_name(index)
    coco_ids, segments = result.coco()
    _, bboxes = areas_and_bboxes(coco_ids, [s["id"] for s in segments])
    # COCO's key order: the box before our extra score.
    segments_info = [{**{k: v for k, v in s.items() if k != "score"}, "bbox": bbox, "score": s["score"]}
                     for s, bbox in zip(segments, bboxes, strict=True)]
    atomic.write_png(layout.pred_png(image_name, model), render_panoptic(result.class_map, result.segment_map, colors))
    write_panoptic_png(layout.panoptic_png(image_name, model), coco_ids)
    counts = None
    gt_annotation = read_annotation(layout, image_name, GT) if with_ground_truth else None
    if gt_annotation is not None:
        gt_map = read_png(layout.panoptic_png(image_name, GT))
        counts, _ = write_analysis(layout, image_name, model, gt_map, gt_annotation["segments_info"], coco_ids,
                                   segments_info)
        if sweep is not None:
            atomic.write_json(layout.sweep_json(image_name, model),
                              sweep_record(sweep.grid, sweep_counts(sweep, gt_map, gt_annotation["segments_info"])))
    write_annotation(layout, image_name, model, {"image_id": index, "file_name": f"{image_name}.png",
                                                 "segments_info": segments_info})
    return counts


def write_analysis(layout: Layout, image: str, model: str, gt_map: np.ndarray, gt_segments: list[dict],
                   pred_map: np.ndarray, pred_segments: list[dict]) -> tuple[dict[int, pq.CategoryCounts],
                                                                             ImageAnalysis]:
    """Matches one prediction to its ground truth once, writes the image's analysis file and returns its PQ
    counts and analysis."""
    match = pq.match_image(gt_map, gt_segments, pred_map, pred_segments)
    analysis = analyze_image(gt_map, gt_segments, pred_map, pred_segments, match=match)
    atomic.write_json(layout.analysis_json(image, model), analysis.record())
    return pq.match_counts(match), analysis
