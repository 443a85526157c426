"""Writes the files of one image: its data (input, ground truths) and one model's prediction.

Each function writes the image's marker file last (dump.folder.Layout.marker: the panoptic annotation JSON, or a
semantic or instance model's per-image record), so its presence means every file of that image is there: for a
panoptic prediction with ground truth, that includes its error analysis, its semantic and instance records and,
when sweeping, its sweep counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from dump import records
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
from metrics.instance import annotation_rle
from metrics.semantic import IGNORE
from segdata.ade20k import DatasetError


@dataclass(frozen=True)
class Writing:
    """What writing an image's files needs to know of the folder and the data."""

    layout: Layout
    colors: np.ndarray  # the class palette
    ground_truth: tuple[str, ...] = ()  # the tasks the data has ground truth of (dump.folder.ground_truth_tasks)
    num_classes: int = 0
    category_ids: dict[int, int] = field(default_factory=dict)  # class id -> instance files' category id
    image_ids: tuple[int, ...] = ()  # per dataset index: the image's id in the instance files
    keys: tuple[str, ...] = ()  # per dataset index: its file name in the dataset
    things: frozenset[int] = frozenset()  # the thing classes: the categories of the instance ground truth

    @property
    def with_ground_truth(self) -> bool:
        return bool(self.ground_truth)


def data_done(layout: Layout, image: str, ground_truth: tuple[str, ...]) -> bool:
    """The image's input and every ground truth the data has are written."""
    markers = {"panoptic": layout.annotation_json(image, GT), "semantic": layout.semantic_png(image, GT),
               "instance": layout.instance_json(image, GT)}
    return layout.input_png(image).exists() and all(markers[task].exists() for task in ground_truth)


def write_data(writing: Writing, index: int, dataset) -> None:
    """Input picture, and with ground truth its render and each task's ground-truth files. Raises the reader's
    error. When only the annotation is unusable the input is still written, so that the image is predicted (and
    reported as failed for its ground truth)."""
    layout = writing.layout
    image_name = layout.image_name(index)
    if not writing.with_ground_truth:
        atomic.write_png(layout.input_png(image_name), dataset.read_image(index))
        return
    try:
        sample = dataset.sample(index)
    except DatasetError:
        atomic.write_png(layout.input_png(image_name), dataset.read_image(index))
        raise
    atomic.write_png(layout.input_png(image_name), sample.image)
    if sample.semantic is not None:
        atomic.write_png(layout.semantic_png(image_name, GT), sample.semantic)
    image_id = writing.image_ids[index]
    annotations = records.ground_truth_annotations(sample, image_id, writing.category_ids)
    if annotations is not None:
        image = {"id": image_id, "file_name": writing.keys[index], "width": sample.image.width,
                 "height": sample.image.height}
        atomic.write_json(layout.instance_json(image_name, GT), records.instance_gt_record(image, annotations))
    if sample.segment_map is None:
        _write_target_without_panoptic(writing, image_name, sample)
        return
    class_map = segments_to_class_map(sample.segment_map, sample.segments)
    atomic.write_png(layout.target_png(image_name), render_panoptic(class_map, sample.segment_map, writing.colors))
    write_panoptic_png(layout.panoptic_png(image_name, GT), sample.segment_map)
    segments_info = [{"id": int(s["id"]), "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0)),
                      "isthing": int(bool(s["isthing"])), "area": int(s["area"]), "bbox": [int(v) for v in s["bbox"]]}
                     for s in sample.segments]
    write_annotation(layout, image_name, GT, {"image_id": index, "file_name": f"{image_name}.png",
                                              "segments_info": segments_info})


def _write_target_without_panoptic(writing: Writing, image_name: str, sample) -> None:
    """The render of a semantic ground truth (borders between classes), else of the instances (COCO without its
    panoptic annotations): painted largest first, so that smaller objects stay visible."""
    if sample.semantic is not None:
        class_map = np.where(sample.semantic == IGNORE, -1, sample.semantic).astype(np.int32)
        atomic.write_png(writing.layout.target_png(image_name), render_panoptic(class_map, None, writing.colors))
        return
    height, width = sample.image.height, sample.image.width
    instances = [{"mask": mask_utils.decode(annotation_rle(a["segmentation"], height, width)).astype(bool),
                  "category_id": a["category_id"], "score": 1.0 / (1.0 + float(a["area"]))} for a in sample.instances]
    segment_map, segments = records.paint_instances(instances, (height, width), 0.0)
    class_map = segments_to_class_map(segment_map, segments)
    atomic.write_png(writing.layout.target_png(image_name), render_panoptic(class_map, segment_map, writing.colors))


def prediction_done(layout: Layout, image: str, model: str, sweep: SweepGrid | None = None,
                    task: str = "panoptic") -> bool:
    """The image's prediction is written; when sweeping (panoptic), also its sweep counts over this grid (an
    image with ground truth whose sweep file is missing or has other settings is predicted again)."""
    if not layout.marker(image, model, task).exists():
        return False
    if task != "panoptic" or sweep is None or not layout.annotation_json(image, GT).exists():
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


def write_prediction(writing: Writing, index: int, model: str, task: str, output,
                     sweep: SweepMaps | None = None) -> dict[int, pq.CategoryCounts] | None:
    """The files of one prediction of a model of `task`: `output` is a panoptic result, a semantic class map or
    (instances, (H, W)). Returns a panoptic prediction's PQ counts against the ground truth (None without)."""
    if task == "semantic":
        write_semantic(writing, index, model, output)
        return None
    if task == "instance":
        write_instances(writing, index, model, *output)
        return None
    return write_panoptic(writing, index, model, output, sweep)


def _semantic_gt(writing: Writing, image: str) -> np.ndarray | None:
    path = writing.layout.semantic_png(image, GT)
    if not (writing.with_ground_truth and path.exists()):
        return None
    with Image.open(path) as png:
        return np.asarray(png)


def _instance_gt(writing: Writing, image: str) -> tuple[dict, list[dict]] | None:
    path = writing.layout.instance_json(image, GT)
    if not (writing.with_ground_truth and path.exists()):
        return None
    return records.parse_instance_gt(read_json_file(path))


def write_semantic_record(writing: Writing, image: str, model: str, semantic: np.ndarray, source_task: str) -> None:
    record = records.semantic_record(_semantic_gt(writing, image), semantic, writing.num_classes, source_task)
    atomic.write_json(writing.layout.semantic_json(image, model), record)


def write_instance_record(writing: Writing, index: int, model: str, instances: list[dict], source_task: str) -> None:
    image = writing.layout.image_name(index)
    record = records.instance_record(writing.image_ids[index], instances, writing.category_ids, source_task,
                                     _instance_gt(writing, image), writing.things)
    atomic.write_json(writing.layout.instance_json(image, model), record)


def write_semantic(writing: Writing, index: int, model: str, class_map: np.ndarray) -> None:
    """A semantic model's render, its uint8 map and (last) its record."""
    image = writing.layout.image_name(index)
    atomic.write_png(writing.layout.pred_png(image, model), render_panoptic(class_map, None, writing.colors))
    semantic = records.semantic_map(class_map)
    atomic.write_png(writing.layout.semantic_png(image, model), semantic)
    write_semantic_record(writing, image, model, semantic, "semantic")


def write_instances(writing: Writing, index: int, model: str, instances: list[dict], shape: tuple[int, int]) -> None:
    """An instance model's render (instances scored from PRESENCE_SCORE, the best on top) and (last) its record."""
    image = writing.layout.image_name(index)
    segment_map, segments = records.paint_instances(instances, shape)
    class_map = segments_to_class_map(segment_map, segments)
    atomic.write_png(writing.layout.pred_png(image, model), render_panoptic(class_map, segment_map, writing.colors))
    write_instance_record(writing, index, model, instances, "instance")


def write_panoptic(writing: Writing, index: int, model: str, result,
                   sweep: SweepMaps | None = None) -> dict[int, pq.CategoryCounts] | None:
    """Render, COCO panoptic PNG and annotation of a panoptic prediction, with its semantic and instance records;
    with ground truth in the folder for this image, also its error analysis and (with `sweep`) the sweep's counts.
    Returns its PQ counts against the ground truth (None when there is none for this image)."""
    layout, colors, with_ground_truth = writing.layout, writing.colors, writing.with_ground_truth
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
    write_semantic_record(writing, image_name, model, records.semantic_map(result.class_map), "panoptic")
    write_instance_record(writing, index, model, records.thing_instances(coco_ids, segments_info), "panoptic")
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
