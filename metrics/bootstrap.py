"""Is the difference real? Paired bootstrap confidence intervals of ΔPQ = PQ_A - PQ_B.

The images are resampled with replacement (1,000 resamples, fixed seed); in each resample both models' PQ is
recomputed from the summed per-image counts of the resampled images, and the interval is the 2.5 and 97.5
percentiles of PQ_A - PQ_B, for All / Things / Stuff and per category (resampling images, never segments).
A resample is a weighted sum: an (n_resamples, n_images) matrix of how often each image was drawn times the
per-image counts, so 1,000 resamples of 2,000 images x 150 categories take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metrics import pq

GROUPS = ("All", "Things", "Stuff")


def counts_array(per_image: Sequence[Mapping[int, pq.CategoryCounts]], category_ids: Sequence[int]) -> np.ndarray:
    """(n_images, n_categories, 4) float64 array of tp, fp, fn, iou_sum per image and category (in the order of
    `category_ids`; categories absent from an image count 0). Unknown categories raise PanopticFormatError."""
    column = {k: i for i, k in enumerate(category_ids)}
    array = np.zeros((len(per_image), len(column), 4))
    for image, counts in enumerate(per_image):
        for category_id, c in counts.items():
            if category_id not in column:
                raise pq.PanopticFormatError(f"unknown category_id {category_id} in image {image}")
            array[image, column[category_id]] = c.tp, c.fp, c.fn, c.iou_sum
    return array


def _pq(iou_sum: np.ndarray, denominator: np.ndarray, isthing: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-category PQ (nan where inactive) and the All/Things/Stuff means over active categories (nan when a
    group has none), along the last axis."""
    active = denominator > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(active, iou_sum / np.where(active, denominator, 1.0), np.nan)
    groups = {}
    for group, members in (("All", np.ones_like(isthing)), ("Things", isthing), ("Stuff", ~isthing)):
        n = (active & members).sum(axis=-1)
        # Added in category order, one by one, as pq.pq_summary adds them (the full-data PQs agree to the bit).
        total = np.cumsum(np.where(active & members, per_class, 0.0), axis=-1)[..., -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            groups[group] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return per_class, groups


def _sufficient(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PQ needs only iou_sum and tp + fp/2 + fn/2 per category (the denominator, > 0 exactly when active)."""
    return counts[..., 3], pq.pq_denominator(counts[..., 0], counts[..., 1], counts[..., 2])


def resample_weights(n_images: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n_images) float64: how often each image is drawn in each resample (each row sums to
    n_images)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    flat = draws + (np.arange(resamples) * n_images)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n_images).reshape(resamples, n_images).astype(np.float64)


@dataclass(frozen=True)
class Interval:
    pq_a: float | None
    pq_b: float | None
    delta: float | None  # PQ_A - PQ_B on all images
    low: float | None  # percentile (1 - confidence) / 2 of the resampled differences
    high: float | None

    @property
    def significant(self) -> bool:
        """The interval leaves out 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict:
        return {"pq_a": self.pq_a, "pq_b": self.pq_b, "delta": self.delta, "low": self.low, "high": self.high,
                "significant": self.significant}


def percentiles(samples: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """(len(q), n_columns) percentiles of each column of (n_samples, n_columns) `samples` with numpy's default
    (linear) interpolation, ignoring nans (nan for a column without values): np.nanpercentile, in one pass for
    all columns instead of one call per column."""
    ordered = np.sort(samples, axis=0)  # nans go last
    valid = (~np.isnan(samples)).sum(axis=0)
    columns = np.arange(samples.shape[1])
    result = np.full((len(q), samples.shape[1]), np.nan)
    for i, percent in enumerate(q):
        position = percent / 100 * np.maximum(valid - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(valid - 1, 0))
        low, high, t = ordered[below, columns], ordered[above, columns], position - below
        with np.errstate(invalid="ignore"):
            result[i] = np.where(valid > 0, low + (high - low) * t, np.nan)
    return result


def _value(x) -> float | None:
    return None if np.isnan(x) else float(x)


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, isthing: Sequence[bool], resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Confidence intervals of PQ_A - PQ_B from two models' per-image counts on the same images
    ((n_images, n_categories, 4) arrays from counts_array, same category order as `isthing`).

    Returns {"All" | "Things" | "Stuff": Interval, "per_class": [Interval per category]}. A PQ that is undefined
    (no active category, or a category inactive in a model) is None; per category, resamples where the category
    is inactive in either model are left out of the percentiles. The same seed gives the same intervals.
    """
    if counts_a.shape != counts_b.shape or counts_a.ndim != 3 or counts_a.shape[2] != 4:
        raise ValueError(f"counts must be two (n_images, n_categories, 4) arrays of one shape, got "
                         f"{counts_a.shape} and {counts_b.shape}")
    n_images, n_classes, _ = counts_a.shape
    isthing = np.asarray(isthing, dtype=bool)
    if isthing.shape != (n_classes,):
        raise ValueError(f"isthing has {isthing.size} entries for {n_classes} categories")
    if n_images == 0:
        raise ValueError("no images to resample")
    # Both models' sufficient statistics side by side, so one matrix product resamples everything.
    stats = np.concatenate([np.stack(_sufficient(c), axis=-1) for c in (counts_a, counts_b)], axis=1)
    full = np.cumsum(stats, axis=0)[-1]  # image by image, as pq.sum_counts adds them
    weights = resample_weights(n_images, resamples, seed)
    resampled = (weights @ stats.reshape(n_images, -1)).reshape(resamples, 2 * n_classes, 2)

    tail = 100 * (1 - confidence) / 2
    point_a, groups_a = _pq(full[:n_classes, 0], full[:n_classes, 1], isthing)
    point_b, groups_b = _pq(full[n_classes:, 0], full[n_classes:, 1], isthing)
    boot_a, boot_groups_a = _pq(resampled[:, :n_classes, 0], resampled[:, :n_classes, 1], isthing)
    boot_b, boot_groups_b = _pq(resampled[:, n_classes:, 0], resampled[:, n_classes:, 1], isthing)

    boot_differences = np.stack([boot_groups_a[g] - boot_groups_b[g] for g in GROUPS] + list((boot_a - boot_b).T),
                                axis=1)  # (resamples, 3 + n_classes)
    low, high = percentiles(boot_differences, [tail, 100 - tail])
    point = [(groups_a[g], groups_b[g]) for g in GROUPS] + list(zip(point_a, point_b, strict=True))
    intervals = []
    for (a, b), lo, hi in zip(point, low, high, strict=True):
        if np.isnan(a) or np.isnan(b) or np.isnan(lo):
            intervals.append(Interval(_value(a), _value(b), None, None, None))
        else:
            intervals.append(Interval(float(a), float(b), float(a - b), float(lo), float(hi)))
    result: dict = dict(zip(GROUPS, intervals[:len(GROUPS)], strict=True))
    result["per_class"] = intervals[len(GROUPS):]
    return result
