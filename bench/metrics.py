"""Per-image PQ accumulation speed: metrics.pq.image_counts against a straightforward implementation.

The straightforward one is written here the way panopticapi's pq_compute_single_core works: np.unique over
gt_id * OFFSET + pred_id, a dictionary of (gt, pred) intersections, and Python loops over it. Both run on the
same ADE20K-sized synthetic maps (683x512, 20-40 segments, void and a few crowd regions), their counts are
checked equal, and images/s of each is printed with the ratio. Pinned to one CPU core where the OS allows.

    python bench/metrics.py [--images 16] [--seconds 3]
    python bench/metrics.py --from-files [--images 500]   # from PNG files: vs panopticapi and hotcoco
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the metrics package.
sys.path[0] = str(Path(__file__).resolve().parents[1])
from metrics import pq  # noqa: E402

OFFSET = 256 * 256 * 256
VOID = 0
HEIGHT, WIDTH = 512, 683
N_CATEGORIES = 150


def straightforward_counts(gt_map, gt_segments, pred_map, pred_segments) -> dict[int, pq.CategoryCounts]:
    """The rules of ade20k-pq-reference.md section 4, coded the direct way."""
    gt_segms = {s["id"]: dict(s) for s in gt_segments}
    pred_segms = {s["id"]: dict(s) for s in pred_segments}
    labels, areas = np.unique(gt_map, return_counts=True)
    for label, area in zip(labels, areas, strict=True):
        if label in gt_segms:
            gt_segms[label]["area"] = area
    labels, areas = np.unique(pred_map, return_counts=True)
    for label, area in zip(labels, areas, strict=True):
        if label != VOID:
            pred_segms[label]["area"] = area

    keys, intersections = np.unique(gt_map.astype(np.uint64) * OFFSET + pred_map.astype(np.uint64),
                                    return_counts=True)
    pairs = {(int(k) // OFFSET, int(k) % OFFSET): int(n) for k, n in zip(keys, intersections, strict=True)}

    counts: dict[int, pq.CategoryCounts] = {}

    def category(category_id):
        return counts.setdefault(category_id, pq.CategoryCounts())

    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), intersection in pairs.items():
        if gt_id not in gt_segms or pred_id not in pred_segms:
            continue
        gt, pred = gt_segms[gt_id], pred_segms[pred_id]
        if gt.get("iscrowd", 0) == 1 or gt["category_id"] != pred["category_id"]:
            continue
        union = pred["area"] + gt["area"] - intersection - pairs.get((VOID, pred_id), 0)
        iou = intersection / union
        if iou > 0.5:
            category(gt["category_id"]).tp += 1
            category(gt["category_id"]).iou_sum += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    crowd = {}
    for gt_id, gt in gt_segms.items():
        if gt.get("iscrowd", 0) == 1:
            crowd[gt["category_id"]] = gt_id
            continue
        category(gt["category_id"]).gt_segments += 1
        if gt_id not in gt_matched:
            category(gt["category_id"]).fn += 1
    for pred_id, pred in pred_segms.items():
        category(pred["category_id"]).pred_segments += 1
        if pred_id in pred_matched:
            continue
        ignored = pairs.get((VOID, pred_id), 0)
        if pred["category_id"] in crowd:
            ignored += pairs.get((crowd[pred["category_id"]], pred_id), 0)
        if ignored / pred["area"] > 0.5:
            continue
        category(pred["category_id"]).fp += 1
    return counts


def synthetic_pair(rng: np.random.Generator):
    """A ground truth of 20-40 Voronoi cells (some void, one crowd) and a prediction that shifts its borders,
    merges and relabels some cells and adds a few spurious ones."""
    n = int(rng.integers(20, 41))
    seeds = rng.uniform((0, 0), (HEIGHT, WIDTH), size=(n, 2))
    ys, xs = np.mgrid[0:HEIGHT:4, 0:WIDTH:4]  # cells at 1/4 resolution, then upsampled: cheap and blocky enough
    cell = np.argmin((ys[..., None] - seeds[:, 0]) ** 2 + (xs[..., None] - seeds[:, 1]) ** 2, axis=-1)
    cell = np.repeat(np.repeat(cell, 4, axis=0), 4, axis=1)[:HEIGHT, :WIDTH]

    categories = rng.integers(0, N_CATEGORIES, size=n)
    gt_ids = rng.permutation(np.arange(1, 4 * n))[:n]  # sparse, unordered ids as in real files
    gt_ids[rng.random(n) < 0.1] = VOID
    gt_map = gt_ids[cell].astype(np.int32)
    gt_segments = [{"id": int(i), "category_id": int(c), "iscrowd": 0}
                   for i, c in zip(gt_ids, categories, strict=True) if i != VOID]
    gt_segments[0]["iscrowd"] = 1

    shifted = np.roll(cell, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
    merged = np.where(rng.random(n) < 0.15, np.roll(np.arange(n), 1), np.arange(n))
    pred_categories = np.where(rng.random(n) < 0.15, rng.integers(0, N_CATEGORIES, size=n), categories)
    pred_cell = merged[shifted]
    extra = int(rng.integers(0, 6))
    for k in range(extra):  # spurious rectangles
        y, x = int(rng.integers(0, HEIGHT - 40)), int(rng.integers(0, WIDTH - 40))
        pred_cell[y:y + 40, x:x + 40] = n + k
    pred_categories = np.concatenate([pred_categories, rng.integers(0, N_CATEGORIES, size=extra)])
    pred_ids = rng.permutation(np.arange(1, 5 * (n + extra)))[:n + extra]
    pred_map = pred_ids[pred_cell].astype(np.int32)
    present = np.unique(pred_cell)
    pred_segments = [{"id": int(pred_ids[k]), "category_id": int(pred_categories[k])} for k in present]
    return gt_map, gt_segments, pred_map, pred_segments


def with_rgb_range_ids(gt_map, gt_segments, pred_map, pred_segments):
    """The same pair with ids spread over 1..2**24 - 1, as in COCO PNGs whose ids come from colours."""
    def spread(ids):
        return np.where(ids > 0, np.asarray(ids, dtype=np.int64) * 65599 % (1 << 24), 0)  # injective on small ids

    def respread(segments):
        return [dict(s, id=int(spread(s["id"]))) for s in segments]

    return spread(gt_map).astype(np.int32), respread(gt_segments), spread(pred_map).astype(np.int32), \
        respread(pred_segments)


def images_per_second(function, pairs, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for pair in pairs:
            function(*pair)
        done += len(pairs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="distinct synthetic image pairs")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per implementation")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    rng = np.random.default_rng(0)
    pairs = [synthetic_pair(rng) for _ in range(args.images)]
    for pair in pairs:  # same numbers, or the timing means nothing
        ours, reference = pq.image_counts(*pair), straightforward_counts(*pair)
        assert ours == reference, (ours, reference)
    segments = np.mean([len(p[1]) for p in pairs]), np.mean([len(p[3]) for p in pairs])
    print(f"{args.images} image pairs of {WIDTH}x{HEIGHT}, {segments[0]:.1f} gt / {segments[1]:.1f} predicted "
          f"segments on average; counts identical")

    for title, case in (("ids 1..~200 (the dump's PNGs)", pairs),
                        ("ids spread over 1..2**24-1 (colour-based COCO PNGs)", [with_rgb_range_ids(*p) for p in pairs])):
        ours = images_per_second(pq.image_counts, case, args.seconds)
        reference = images_per_second(straightforward_counts, case, args.seconds)
        print(f"{title}:")
        print(f"  metrics.pq.image_counts:  {ours:8.1f} images/s")
        print(f"  straightforward (dict):   {reference:8.1f} images/s")
        print(f"  ratio:                    {ours / reference:8.1f}x")


if __name__ == "__main__":
    if "--from-files" in sys.argv:  # scoring COCO panoptic files: bench/metrics_files.py
        from bench import metrics_files
        metrics_files.cli(sys.argv[1:], synthetic_pair)
    else:
        main()
