"""metrics.bootstrap: resampling as a weighted sum equals resampling the images one by one (pq.pq_summary on
summed counts), numpy's percentiles, and the properties a confidence interval must have."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import bootstrap, pq


def random_counts(rng, n_images, n_classes, quality=0.8):
    tp = rng.poisson(0.6, (n_images, n_classes))
    fp = rng.poisson(0.3, (n_images, n_classes))
    fn = rng.poisson(0.3, (n_images, n_classes))
    iou = tp * rng.uniform(quality - 0.15, min(quality + 0.15, 1.0), (n_images, n_classes))
    return np.stack([tp, fp, fn, iou], axis=-1).astype(np.float64)


def as_counts(array, category_ids):
    return [{k: pq.CategoryCounts(int(row[i, 0]), int(row[i, 1]), int(row[i, 2]), float(row[i, 3]))
             for i, k in enumerate(category_ids) if row[i].any()} for row in array]


def test_counts_array_round_trip_and_unknown_category():
    rng = np.random.default_rng(0)
    array = random_counts(rng, 6, 4)
    ids = [3, 1, 7, 2]
    assert (bootstrap.counts_array(as_counts(array, ids), ids) == array).all()
    with pytest.raises(pq.PanopticFormatError, match="unknown category_id 9 in image 0"):
        bootstrap.counts_array([{9: pq.CategoryCounts(tp=1)}], ids)


def test_point_estimates_equal_pq_summary_to_the_bit():
    rng = np.random.default_rng(1)
    ids, isthing = list(range(12)), [k < 8 for k in range(12)]
    a, b = random_counts(rng, 40, 12), random_counts(rng, 40, 12, quality=0.7)
    a[:, 5] = 0  # a category model A never touches: inactive in A only
    result = bootstrap.paired_bootstrap(a, b, isthing, resamples=50)
    categories = dict(zip(ids, isthing, strict=True))
    summary_a = pq.pq_summary(pq.sum_counts(as_counts(a, ids)), categories)
    summary_b = pq.pq_summary(pq.sum_counts(as_counts(b, ids)), categories)
    for group in ("All", "Things", "Stuff"):
        assert result[group].pq_a == summary_a[group]["pq"] and result[group].pq_b == summary_b[group]["pq"]
        assert result[group].delta == summary_a[group]["pq"] - summary_b[group]["pq"]
    for k in ids:
        assert result["per_class"][k].pq_a == summary_a["per_class"].get(k, {}).get("pq")
        assert result["per_class"][k].pq_b == summary_b["per_class"][k]["pq"]
    assert result["per_class"][5].delta is None and result["per_class"][5].low is None


def test_weighted_sums_equal_resampling_images_one_by_one():
    rng = np.random.default_rng(2)
    n_images, ids, isthing = 15, [0, 1, 2, 3], [True, True, False, False]
    a, b = random_counts(rng, n_images, 4), random_counts(rng, n_images, 4, quality=0.6)
    resamples, seed = 40, 11
    draws = np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))  # the same draws
    categories = dict(zip(ids, isthing, strict=True))
    differences = []
    for draw in draws:
        pq_a = pq.pq_summary(pq.sum_counts(as_counts(a[draw], ids)), categories)["All"]["pq"]
        pq_b = pq.pq_summary(pq.sum_counts(as_counts(b[draw], ids)), categories)["All"]["pq"]
        differences.append(pq_a - pq_b)
    expected = np.percentile(differences, [2.5, 97.5])
    result = bootstrap.paired_bootstrap(a, b, isthing, resamples=resamples, seed=seed)
    assert [result["All"].low, result["All"].high] == pytest.approx(expected.tolist(), abs=1e-12)
    weights = bootstrap.resample_weights(n_images, resamples, seed)
    assert (weights.sum(axis=1) == n_images).all()
    assert (weights == np.stack([np.bincount(d, minlength=n_images) for d in draws])).all()


def test_percentiles_equal_numpy_nanpercentile():
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(101, 6))
    samples[rng.random(samples.shape) < 0.2] = np.nan
    samples[:, 4] = np.nan  # a column without values
    samples[1:, 5] = np.nan  # a column with one value
    ours = bootstrap.percentiles(samples, [2.5, 50, 97.5])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanpercentile(samples, [2.5, 50, 97.5], axis=0)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_a_model_against_itself_gives_zero_intervals():
    rng = np.random.default_rng(4)
    a = random_counts(rng, 200, 10)
    result = bootstrap.paired_bootstrap(a, a.copy(), [True] * 6 + [False] * 4)
    for interval in [result["All"], result["Things"], result["Stuff"], *result["per_class"]]:
        assert (interval.delta, interval.low, interval.high) == (0.0, 0.0, 0.0)
        assert not interval.significant


def test_same_seed_same_interval_and_intervals_narrow_with_more_images():
    rng = np.random.default_rng(5)
    a, b = random_counts(rng, 1600, 8, quality=0.8), random_counts(rng, 1600, 8, quality=0.75)
    isthing = [True] * 8
    first = bootstrap.paired_bootstrap(a, b, isthing, seed=3)
    assert bootstrap.paired_bootstrap(a, b, isthing, seed=3) == first
    assert bootstrap.paired_bootstrap(a, b, isthing, seed=4)["All"] != first["All"]
    widths = []
    for n in (25, 100, 400, 1600):
        interval = bootstrap.paired_bootstrap(a[:n], b[:n], isthing)["All"]
        assert interval.low <= interval.delta <= interval.high
        widths.append(interval.high - interval.low)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 4
    assert first["All"].significant  # 0.05 better IoU on 1,600 images is a real difference
    assert first["Stuff"].pq_a is None and first["Stuff"].delta is None  # no stuff category


def test_bad_shapes_are_refused():
    a = np.zeros((3, 2, 4))
    with pytest.raises(ValueError, match="same shape|one shape"):
        bootstrap.paired_bootstrap(a, np.zeros((4, 2, 4)), [True, False])
    with pytest.raises(ValueError, match="isthing has 3 entries for 2 categories"):
        bootstrap.paired_bootstrap(a, a, [True, False, True])
    with pytest.raises(ValueError, match="no images"):
        bootstrap.paired_bootstrap(np.zeros((0, 2, 4)), np.zeros((0, 2, 4)), [True, False])
