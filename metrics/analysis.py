"""What the comparison stores per image beside the PQ counts: error types, Boundary PQ counts, PQ counts by size.

`analyze_image` runs on one image (the dump calls it as it writes each prediction) and returns an ImageAnalysis.
What to store of it, `ImageAnalysis.record()` (JSON-ready):

    {"segments": [{"side": "gt" | "pred", "id", "category_id", "type", "linked_id"}, ...],
     "classes": {"<category_id>": {column: number for column in ANALYSIS_COLUMNS}, ...}}

- segments: one entry per false negative ("gt": a ground-truth segment id, type in errors.FN_TYPES) and per false
  positive ("pred": a predicted segment id, type in errors.FP_TYPES); linked_id is the segment of the other side
  the rule found (0 = none, for `missed` and `background`).
- classes: one row per category with any count, integers except the *_iou_sum columns:
  fn_class fn_merged fn_split fn_localization fn_missed fp_class fp_merged fp_split fp_localization fp_background
  class_iou_sum (IoU of each `class` false negative with its linked prediction: what fixing it scores),
  boundary_tp boundary_fp boundary_fn boundary_iou_sum (Boundary PQ counts),
  {small,medium,large}_{tp,fp,fn,iou_sum} (PQ counts by size bin).
  Every dataset number is a sum of these rows over images (`sum_analyses`), like segment_stats.csv for PQ;
  `AnalysisCounts.from_rows` reads them back (strings from a CSV included).

`summaries` turns summed rows plus summed PQ counts (segment_stats.csv) into the error table, Boundary PQ and PQ by
size.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from metrics import pq
from metrics.boundary import boundary_counts, boundary_ious
from metrics.coco_panoptic import in_image, map_pairs, open_evaluation
from metrics.errors import (
    ErrorCounts,
    SegmentErrors,
    classify,
    error_counts,
    error_table,
    segment_records,
    sum_error_counts,
)
from metrics.sizes import SIZE_BINS, size_counts, size_summary

COUNT_FIELDS = ("tp", "fp", "fn", "iou_sum")
ERROR_COLUMNS = tuple(f.name for f in dataclasses.fields(ErrorCounts))
BOUNDARY_COLUMNS = tuple(f"boundary_{name}" for name in COUNT_FIELDS)
SIZE_COLUMNS = tuple(f"{size}_{name}" for size in SIZE_BINS for name in COUNT_FIELDS)
ANALYSIS_COLUMNS = ERROR_COLUMNS + BOUNDARY_COLUMNS + SIZE_COLUMNS
FLOAT_COLUMNS = frozenset(c for c in ANALYSIS_COLUMNS if c.endswith("iou_sum"))


@dataclass
class AnalysisCounts:
    """Per-category counts of one image or summed over images: errors by type, Boundary PQ counts, PQ counts per
    size bin. Categories without any count are absent."""

    errors: dict[int, ErrorCounts] = field(default_factory=dict)
    boundary: dict[int, pq.CategoryCounts] = field(default_factory=dict)
    sizes: dict[str, dict[int, pq.CategoryCounts]] = field(default_factory=dict)

    def rows(self) -> dict[int, dict[str, int | float]]:
        """{category_id: {column: value for ANALYSIS_COLUMNS}}, ascending category id."""
        every = set(self.errors) | set(self.boundary) | {k for counts in self.sizes.values() for k in counts}
        rows = {}
        for k in sorted(every):
            row = dataclasses.asdict(self.errors.get(k, ErrorCounts()))
            row.update(_count_fields("boundary", self.boundary.get(k)))
            for size in SIZE_BINS:
                row.update(_count_fields(size, self.sizes.get(size, {}).get(k)))
            rows[k] = row
        return rows

    @classmethod
    def from_rows(cls, rows: Mapping[int, Mapping[str, object]]) -> AnalysisCounts:
        """The inverse of rows(); values may be strings (as read from a CSV). Raises ValueError naming the
        category and column of a missing or malformed value."""
        result = cls()
        for category_id, row in rows.items():
            values = {column: _parse(category_id, column, row) for column in ANALYSIS_COLUMNS}
            k = int(category_id)
            errors = ErrorCounts(**{c: values[c] for c in ERROR_COLUMNS})
            if errors != ErrorCounts():
                result.errors[k] = errors
            boundary = _counts(values, "boundary")
            if boundary != pq.CategoryCounts():
                result.boundary[k] = boundary
            for size in SIZE_BINS:
                counts = _counts(values, size)
                if counts != pq.CategoryCounts():
                    result.sizes.setdefault(size, {})[k] = counts
        return result


def _counts(values: Mapping[str, int | float], prefix: str) -> pq.CategoryCounts:
    return pq.CategoryCounts(*(values[f"{prefix}_{name}"] for name in COUNT_FIELDS))


def _count_fields(prefix: str, counts: pq.CategoryCounts | None) -> dict[str, int | float]:
    counts = counts or pq.CategoryCounts()
    return {f"{prefix}_{name}": getattr(counts, name) for name in COUNT_FIELDS}


def _parse(category_id, column: str, row: Mapping[str, object]) -> int | float:
    if column not in row:
        raise ValueError(f"category {category_id}: no value for column {column!r}")
    try:
        value = float(row[column]) if column in FLOAT_COLUMNS else int(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"category {category_id}: column {column!r} is not a number: {row[column]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"category {category_id}: column {column!r} must be a non-negative number: {value!r}")
    return value


def sum_analyses(per_image: Iterable[AnalysisCounts]) -> AnalysisCounts:
    """Adds per-image analysis counts category by category, image by image."""
    per_image = list(per_image)
    return AnalysisCounts(
        errors=sum_error_counts(a.errors for a in per_image),
        boundary=pq.sum_counts(a.boundary for a in per_image),
        sizes={size: pq.sum_counts(a.sizes[size] for a in per_image if size in a.sizes)
               for size in SIZE_BINS if any(size in a.sizes for a in per_image)})


@dataclass(frozen=True, eq=False)
class ImageAnalysis:
    """One image's analysis: its PQ match, the error types of its segments, the boundary IoU of each pair PQ
    matched (aligned with match.matched_rows) and the per-category counts to store."""

    match: pq.ImageMatch
    errors: SegmentErrors
    boundary_iou: np.ndarray
    counts: AnalysisCounts

    def segments(self) -> list[dict]:
        """One dict per false negative and false positive: {"side": "gt" | "pred", "id", "category_id", "type",
        "linked_id"} (linked_id 0 = none)."""
        return segment_records(self.match, self.errors)

    def record(self) -> dict:
        """Everything to store for the image, JSON-ready: {"segments": segments(), "classes": {"<id>": row}}."""
        return {"segments": self.segments(), "classes": {str(k): row for k, row in self.counts.rows().items()}}


def analyze_image(gt_map: np.ndarray, gt_segments: Sequence[Mapping], pred_map: np.ndarray,
                  pred_segments: Sequence[Mapping], gt_areas_from_json: bool = False,
                  match: pq.ImageMatch | None = None) -> ImageAnalysis:
    """Error types, Boundary PQ counts and PQ counts by size of one image. Arguments as pq.image_counts (same
    errors); pass `match` when pq.match_image has already run on the same arguments."""
    if match is None:
        match = pq.match_image(gt_map, gt_segments, pred_map, pred_segments, gt_areas_from_json)
    errors = classify(match)
    ious = boundary_ious(match, gt_map, pred_map)
    counts = AnalysisCounts(error_counts(match, errors), boundary_counts(match, ious), size_counts(match))
    return ImageAnalysis(match, errors, ious, counts)


def summaries(counts: Mapping[int, pq.CategoryCounts], analysis: AnalysisCounts,
              categories: Mapping[int, bool]) -> dict:
    """{"errors": errors.error_table, "boundary": pq.pq_summary of the boundary counts, "sizes": {bin:
    pq.pq_summary}} from PQ counts and analysis counts summed over the same images."""
    return {"errors": error_table(counts, analysis.errors, categories),
            "boundary": pq.pq_summary(analysis.boundary, categories),
            "sizes": size_summary(analysis.sizes, categories)}


def _analyze_pair(pair: tuple) -> tuple[object, dict[int, pq.CategoryCounts], AnalysisCounts]:
    image_id, gt_map, gt_segments, pred_map, pred_segments = pair
    with in_image(image_id):
        match = pq.match_image(gt_map, gt_segments, pred_map, pred_segments, gt_areas_from_json=True)
        analysis = analyze_image(gt_map, gt_segments, pred_map, pred_segments, match=match)
    return image_id, pq.match_counts(match), analysis.counts


def analyze_files(gt_json_path: str | os.PathLike, pred_json_path: str | os.PathLike,
                  gt_folder: str | os.PathLike | None = None, pred_folder: str | os.PathLike | None = None,
                  workers: int | None = None) -> tuple[dict[int, bool], dict, dict]:
    """The categories, {image_id: pq counts} and {image_id: AnalysisCounts} of a COCO panoptic ground truth and
    prediction (matched once per image, as pq_compute matches them: ground-truth areas from the JSON), on
    `workers` threads (default: every available core). Raises CocoPanopticError."""
    evaluation = open_evaluation(gt_json_path, pred_json_path, gt_folder, pred_folder)
    results = map_pairs(_analyze_pair, evaluation, workers)
    counts = {image_id: image_counts for image_id, image_counts, _ in results}
    analyses = {image_id: analysis for image_id, _, analysis in results}
    return evaluation.categories, counts, analyses
