"""Panoptic error types (TIDE for PQ): a type for every false negative and false positive of panopticapi's
matching, and what fixing every error of one type would add to PQ.

The rules (docs/metrics.md, "Error types"), on one image's `ImageMatch`. Ground-truth segments are the non-crowd
ones, predictions the counted ones (not more than half on void or on their category's crowd region); IoU is
panopticapi's (the prediction's void pixels leave the union); "p covers g" is |p ∩ g| / |g|. First rule wins.

False negative g:  class (a prediction of another class has IoU > 0.5 with g), merged (a prediction of g's class
covers at least half of g and of another ground-truth segment of that class), split (predictions of g's class
together cover at least half of g and at least two each cover at least 10%), localization (best IoU with a
prediction of g's class in (0.1, 0.5]), missed.
False positive p:  class (a ground-truth segment of another class has IoU > 0.5 with p), merged (p covers at
least half of two or more ground-truth segments of its class), split (at least half of p lies on a ground-truth
segment of its class that is matched, or that at least two predictions of its class each cover 10% of),
localization (best IoU with a ground-truth segment of p's class in (0.1, 0.5]), background.

Fixing a type changes the summed counts: a `class` false negative becomes a TP with the IoU of its linked
prediction (and the linked false positive disappears), any other fixed error is removed. ΔPQ = PQ after the fix
- PQ; the ΔPQs of the types do not add up to anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from metrics import pq

FN_TYPES = ("class", "merged", "split", "localization", "missed")
FP_TYPES = ("class", "merged", "split", "localization", "background")
FIXES = ("class", "merged", "split", "localization", "missed", "background")
NOT_AN_ERROR = -1  # type code of a segment that is neither a false negative nor a false positive


@dataclass(frozen=True, eq=False)
class SegmentErrors:
    """The type of every error of one image, aligned with the ImageMatch's rows and columns.

    Type codes index FN_TYPES (rows) and FP_TYPES (columns); NOT_AN_ERROR elsewhere. A link is the id of the
    segment the rule found (the other-class prediction for `class`, the merging prediction for `merged`, the
    largest piece for `split`, the best-IoU one for `localization`; for a false positive the ground-truth segment
    of the same kinds), 0 for `missed` and `background`.
    """

    gt_type: np.ndarray  # (n_gt,) int8
    gt_link: np.ndarray  # (n_gt,) int64 predicted segment id, 0 = none
    gt_link_iou: np.ndarray  # (n_gt,) float64 IoU with the linked prediction (what a fixed `class` error scores)
    pred_type: np.ndarray  # (n_pred,) int8
    pred_link: np.ndarray  # (n_pred,) int64 ground-truth segment id, 0 = none


@dataclass
class ErrorCounts:
    """Errors of one category by type (summed over images like pq.CategoryCounts)."""

    fn_class: int = 0
    fn_merged: int = 0
    fn_split: int = 0
    fn_localization: int = 0
    fn_missed: int = 0
    fp_class: int = 0
    fp_merged: int = 0
    fp_split: int = 0
    fp_localization: int = 0
    fp_background: int = 0
    class_iou_sum: float = 0.0  # IoU of each `class` false negative with its linked prediction

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                                     strict=True)))

    def fn(self, kind: str) -> int:
        return getattr(self, f"fn_{kind}") if kind in FN_TYPES else 0

    def fp(self, kind: str) -> int:
        return getattr(self, f"fp_{kind}") if kind in FP_TYPES else 0


def _first(rules: list[np.ndarray], links: list[np.ndarray], fallback: int) -> tuple[np.ndarray, np.ndarray]:
    """Per element, the index of the first rule that holds (fallback when none does) and that rule's link."""
    kind = np.select(rules, np.arange(len(rules)), default=fallback).astype(np.int8)
    link = np.select(rules, links, default=-1)
    return kind, link


@dataclass(frozen=True)
class _Pairs:
    """What the rules read, per (ground-truth row, prediction column) of one image. Pairs with a crowd row, an
    uncounted column or no common pixel are left out of every `same_*` / `other_*` / `covers_*` array."""

    inter: np.ndarray  # pixels in common
    iou: np.ndarray  # panopticapi's IoU
    other_iou: np.ndarray  # IoU of pairs of different categories, 0 elsewhere
    same_iou: np.ndarray  # IoU of pairs of one category, 0 elsewhere
    same_inter: np.ndarray  # pixels in common of pairs of one category, 0 elsewhere
    covers_half: np.ndarray  # one category, the prediction covers at least half of the gt segment
    covers_tenth: np.ndarray  # one category, the prediction covers at least 10% of the gt segment
    merges: np.ndarray  # (n_pred,) ground-truth segments of its category the prediction covers half of


def _pairs(match: pq.ImageMatch) -> _Pairs:
    inter = match.intersection.astype(np.int64)
    gt_area = match.gt_area.astype(np.int64)[:, None]
    union = match.pred_area[None, :] + gt_area - inter - match.pred_on_void[None, :]
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    counted = match.pred_matched | match.false_positive
    valid = ~match.gt_crowd[:, None] & counted[None, :] & (inter > 0)
    same = valid & (match.gt_category[:, None] == match.pred_category[None, :])
    # "covers" thresholds in integers: |p ∩ g| / |g| >= 1/2 is 2 |p ∩ g| >= |g|, exactly.
    covers_half = same & (2 * inter >= gt_area)
    return _Pairs(inter, iou, np.where(valid & ~same, iou, 0.0), np.where(same, iou, 0.0), np.where(same, inter, 0),
                  covers_half, same & (10 * inter >= gt_area), covers_half.sum(axis=0))


def _best(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest value along `axis` and where it is (zeros when the axis is empty)."""
    if values.shape[axis] == 0:
        size = values.shape[1 - axis]
        return np.zeros(size), np.zeros(size, dtype=np.int64)
    return values.max(axis=axis), values.argmax(axis=axis)


def _is_localization(best_iou: np.ndarray) -> np.ndarray:
    return (best_iou > 0.1) & (best_iou <= 0.5)


def _false_negative_types(match: pq.ImageMatch, p: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    class_iou, class_col = _best(p.other_iou, 1)
    merged_inter, merged_col = _best(np.where(p.covers_half & (p.merges >= 2)[None, :], p.inter, 0), 1)
    _, piece_col = _best(p.same_inter, 1)
    loc_iou, loc_col = _best(p.same_iou, 1)
    split = (2 * p.same_inter.sum(axis=1) >= match.gt_area) & (p.covers_tenth.sum(axis=1) >= 2)
    rules = [class_iou > 0.5, merged_inter > 0, split, _is_localization(loc_iou)]
    return _first(rules, [class_col, merged_col, piece_col, loc_col], len(FN_TYPES) - 1)


def _false_positive_types(match: pq.ImageMatch, p: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    class_iou, class_row = _best(p.other_iou, 0)
    _, merged_row = _best(np.where(p.covers_half, p.inter, 0), 0)
    crowded = match.gt_matched | (p.covers_tenth.sum(axis=1) >= 2)  # matched, or covered by several pieces
    lies_on = (p.same_inter > 0) & (2 * p.inter >= match.pred_area[None, :]) & crowded[:, None]
    split_inter, split_row = _best(np.where(lies_on, p.inter, 0), 0)
    loc_iou, loc_row = _best(p.same_iou, 0)
    rules = [class_iou > 0.5, p.merges >= 2, split_inter > 0, _is_localization(loc_iou)]
    return _first(rules, [class_row, merged_row, split_row, loc_row], len(FP_TYPES) - 1)


def classify(match: pq.ImageMatch) -> SegmentErrors:
    """The error type and linked segment of every false negative and false positive of one image."""
    p = _pairs(match)
    gt_type, gt_col = _false_negative_types(match, p)
    gt_type[~match.false_negative] = NOT_AN_ERROR
    pred_type, pred_row = _false_positive_types(match, p)
    pred_type[~match.false_positive] = NOT_AN_ERROR
    gt_col = np.where(gt_type == NOT_AN_ERROR, -1, gt_col)
    pred_row = np.where(pred_type == NOT_AN_ERROR, -1, pred_row)
    # Index with a placeholder where there is no link (and no segment to index at all when a side is empty).
    gt_link = match.pred_ids[np.maximum(gt_col, 0)] if len(match.pred_ids) else np.zeros(len(gt_col), np.int64)
    gt_link_iou = p.iou[np.arange(len(gt_col)), np.maximum(gt_col, 0)] if len(match.pred_ids) else np.zeros(len(gt_col))
    pred_link = match.gt_ids[np.maximum(pred_row, 0)] if len(match.gt_ids) else np.zeros(len(pred_row), np.int64)
    return SegmentErrors(gt_type, np.where(gt_col >= 0, gt_link, 0).astype(np.int64),
                         np.where(gt_col >= 0, gt_link_iou, 0.0), pred_type,
                         np.where(pred_row >= 0, pred_link, 0).astype(np.int64))


def error_counts(match: pq.ImageMatch, errors: SegmentErrors) -> dict[int, ErrorCounts]:
    """Per category, the errors of one image by type (only categories with an error)."""
    counts: dict[int, ErrorCounts] = {}
    for row in np.flatnonzero(errors.gt_type != NOT_AN_ERROR).tolist():
        c = counts.setdefault(int(match.gt_category[row]), ErrorCounts())
        kind = FN_TYPES[errors.gt_type[row]]
        setattr(c, f"fn_{kind}", c.fn(kind) + 1)
        if kind == "class":
            c.class_iou_sum += float(errors.gt_link_iou[row])
    for col in np.flatnonzero(errors.pred_type != NOT_AN_ERROR).tolist():
        c = counts.setdefault(int(match.pred_category[col]), ErrorCounts())
        kind = FP_TYPES[errors.pred_type[col]]
        setattr(c, f"fp_{kind}", c.fp(kind) + 1)
    return counts


def segment_records(match: pq.ImageMatch, errors: SegmentErrors) -> list[dict]:
    """One dict per error of the image: {"side": "gt" | "pred", "id", "category_id", "type", "linked_id"}
    (linked_id 0 = none), false negatives first, each side in the match's order."""
    records = []
    for side, types, names, ids, categories, links in (
            ("gt", errors.gt_type, FN_TYPES, match.gt_ids, match.gt_category, errors.gt_link),
            ("pred", errors.pred_type, FP_TYPES, match.pred_ids, match.pred_category, errors.pred_link)):
        for k in np.flatnonzero(types != NOT_AN_ERROR).tolist():
            records.append({"side": side, "id": int(ids[k]), "category_id": int(categories[k]),
                            "type": names[types[k]], "linked_id": int(links[k])})
    return records


def sum_error_counts(per_image) -> dict[int, ErrorCounts]:
    """Adds per-image error counts category by category."""
    total: dict[int, ErrorCounts] = {}
    for counts in per_image:
        for category_id, c in counts.items():
            total[category_id] = total.get(category_id, ErrorCounts()) + c
    return total


def fixed(counts: pq.CategoryCounts, errors: ErrorCounts | None, fix: str | None = None,
          perfect_iou: bool = False) -> pq.CategoryCounts:
    """One category's counts with every error of type `fix` fixed ("all" fixes every type, None none) and,
    with `perfect_iou`, every TP's IoU set to 1."""
    errors = errors or ErrorCounts()
    kinds = FIXES if fix == "all" else () if fix is None else (fix,)
    if any(kind not in FIXES for kind in kinds):
        raise ValueError(f"unknown error type {fix!r}: one of {', '.join(FIXES)} or 'all'")
    tp, fp, fn, iou_sum = counts.tp, counts.fp, counts.fn, counts.iou_sum
    for kind in kinds:
        fn -= errors.fn(kind)
        fp -= errors.fp(kind)
        if kind == "class":
            tp += errors.fn_class
            iou_sum += errors.class_iou_sum
    return pq.CategoryCounts(tp, fp, fn, float(tp) if perfect_iou else iou_sum)


def _fixed_summary(counts, errors, categories, fix, perfect_iou) -> dict:
    every = set(counts) | set(errors)
    return pq.pq_summary({k: fixed(counts.get(k, pq.CategoryCounts()), errors.get(k), fix, perfect_iou)
                          for k in every}, categories)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def error_table(counts: Mapping[int, pq.CategoryCounts], errors: Mapping[int, ErrorCounts],
                categories: Mapping[int, bool]) -> dict:
    """Error counts by type and ΔPQ if fixed, per category and for All / Things / Stuff.

    `counts` and `errors` are summed over the same images (one image's, or a dataset's). Returns
    {"All" | "Things" | "Stuff": {"pq", "n", "fn": {type: n}, "fp": {type: n}, "delta_pq": {type: ΔPQ, ...,
    "sq": ΔPQ_SQ}}, "per_class": {id: the same}} for the categories active in `counts`. A ΔPQ is None where a
    group or category has no active category after the fix (e.g. a category whose only errors were fixed away).
    """
    base = pq.pq_summary(counts, categories)
    fixes = {kind: _fixed_summary(counts, errors, categories, kind, False) for kind in FIXES}
    fixes["sq"] = _fixed_summary(counts, errors, categories, None, True)
    table: dict = {}
    for group in ("All", "Things", "Stuff"):
        members = [k for k in base["per_class"] if group == "All" or bool(categories[k]) == (group == "Things")]
        summed = sum((errors[k] for k in members if k in errors), ErrorCounts())
        table[group] = {"pq": base[group]["pq"], "n": base[group]["n"],
                        "fn": {kind: summed.fn(kind) for kind in FN_TYPES},
                        "fp": {kind: summed.fp(kind) for kind in FP_TYPES},
                        "delta_pq": {kind: _delta(after[group]["pq"], base[group]["pq"])
                                     for kind, after in fixes.items()}}
    table["per_class"] = {}
    for k, metrics in base["per_class"].items():
        e = errors.get(k, ErrorCounts())
        table["per_class"][k] = {
            "pq": metrics["pq"], "fn": {kind: e.fn(kind) for kind in FN_TYPES},
            "fp": {kind: e.fp(kind) for kind in FP_TYPES},
            "delta_pq": {kind: _delta(after["per_class"].get(k, {}).get("pq"), metrics["pq"])
                         for kind, after in fixes.items()}}
    return table
