"""Metric speed against baselines run in the same process, on the same data, results checked equal first.

- pq: per-image PQ accumulation, metrics.pq.image_counts against a straightforward implementation written here
  the way panopticapi's pq_compute_single_core works (np.unique over gt_id * OFFSET + pred_id, a dictionary of
  (gt, pred) intersections, Python loops), on ADE20K-sized synthetic maps (683x512, 20-40 segments, void and a
  few crowd regions).
- semantic: per-image confusion counts (metrics.semantic.confusion, on hotcoco's counting) against torchmetrics'
  multiclass confusion matrix (tensors made outside the timing, one thread) and a numpy bincount (the
  alternative the choice was measured against), at Cityscapes (2048x1024, 19 classes) and ADE20K (683x512, 150
  classes) sizes.
- analysis: error types + Boundary PQ + size bins per image (metrics.analysis.analyze_image) against plain PQ
  counts on the pq maps, and the paired bootstrap at 2,000 images x 150 classes (metrics.bootstrap).
- ap: COCO mask AP of 500 generated COCO-sized images (640x480, 2-14 ground-truth polygons, 5% crowd RLE) x 100
  detections each, metrics.instance.mask_ap (hotcoco) against pycocotools' COCOeval and faster-coco-eval.

Pinned to one CPU core where the OS allows; the load average is printed with the figures.

    python bench/metrics.py [--only pq|analysis|semantic|ap] [--images 16] [--seconds 3] [--ap-images 500]
    python bench/metrics.py --from-files [--images 500]   # from PNG files: vs panopticapi and hotcoco
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the metrics package.
sys.path[0] = str(Path(__file__).resolve().parents[1])
from metrics import analysis, bootstrap, instance, pq, semantic  # noqa: E402

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


def bench_pq(args) -> None:
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


def semantic_pair(rng: np.random.Generator, height: int, width: int, num_classes: int):
    """A blocky ground truth with ignored pixels and a prediction that is right on about 70% of the pixels."""
    coarse = rng.integers(0, num_classes, size=(height // 16 + 1, width // 16 + 1))
    gt = np.repeat(np.repeat(coarse, 16, 0), 16, 1)[:height, :width].astype(np.uint8)
    gt[rng.random((height, width)) < 0.05] = semantic.IGNORE
    wrong = rng.random((height, width)) < 0.3
    pred = np.where(wrong, rng.integers(0, num_classes, size=(height, width)), gt) % 255
    pred = np.where(gt == semantic.IGNORE, 0, pred).astype(np.uint8)
    return gt, pred


def bench_semantic(args) -> None:
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for title, (height, width, num_classes) in (("Cityscapes 2048x1024, 19 classes", (1024, 2048, 19)),
                                                ("ADE20K 683x512, 150 classes", (512, 683, 150))):
        pairs = [semantic_pair(rng, height, width, num_classes) for _ in range(4)]
        tensors = [(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(g.astype(np.int64))) for g, p in pairs]

        def ours(gt, pred, num_classes=num_classes):
            return semantic.confusion(gt, pred, num_classes)

        def torchmetrics(pred, target, num_classes=num_classes):
            return multiclass_confusion_matrix(pred, target, num_classes, ignore_index=semantic.IGNORE,
                                               validate_args=False)

        def bincount(gt, pred, num_classes=num_classes):
            n = num_classes + 1  # uint8 ground truth keyed by its raw value: a uint16 key, no lookup pass
            key = gt * np.uint16(n)
            key += np.minimum(pred, np.uint8(num_classes))
            return np.bincount(key.ravel(), minlength=256 * n).reshape(256, n)[:num_classes]

        for (gt, pred), (pred_t, gt_t) in zip(pairs, tensors, strict=True):
            expected = ours(gt, pred)
            assert (torchmetrics(pred_t, gt_t).numpy() == expected[:, :num_classes]).all()
            assert (bincount(gt, pred) == expected).all()
        rates = {"metrics.semantic.confusion": images_per_second(ours, pairs, args.seconds),
                 "torchmetrics confusion matrix": images_per_second(torchmetrics, tensors, args.seconds),
                 "numpy bincount (uint16 key)": images_per_second(bincount, pairs, args.seconds)}
        print(f"semantic counts, {title} (counts identical):")
        for name, rate in rates.items():
            print(f"  {name:31s} {rate:8.1f} images/s")
        print(f"  ratio ours / torchmetrics:      {rates['metrics.semantic.confusion'] / rates['torchmetrics confusion matrix']:8.1f}x")


def _polygon(rng, cx, cy, radius):
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 9))))
    radii = radius * rng.uniform(0.6, 1.0, len(angles))
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)


def coco_case(n_images: int, detections: int = 100, seed: int = 0, height: int = 480, width: int = 640):
    """A COCO instance document and results: polygons (5% crowd, as RLE), 100 detections per image of which 60%
    are jittered copies of a ground-truth object (a fifth of them with another class) and the rest random."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    category_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    images, annotations, results = [], [], []
    for k in range(n_images):
        image_id = 1000 + 7 * k  # ids with gaps
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:012d}.jpg"})
        objects = []
        for _ in range(int(rng.integers(2, 15))):
            radius = float(np.exp(rng.uniform(np.log(4), np.log(150))))
            points = _polygon(rng, rng.uniform(40, width - 40), rng.uniform(40, height - 40), radius)
            category = int(rng.choice(category_ids[:20]))
            rle = mask_utils.merge(mask_utils.frPyObjects([points.ravel().tolist()], height, width))
            crowd = bool(rng.random() < 0.05)
            segmentation = instance.encode_mask(mask_utils.decode(rle)) if crowd else [points.ravel().round(2).tolist()]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "iscrowd": int(crowd), "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "segmentation": segmentation})
            objects.append((points, radius, category))
        for _ in range(detections):
            if rng.random() < 0.6:
                points, radius, category = objects[int(rng.integers(len(objects)))]
                center = points.mean(0)
                points = center + (points - center) * rng.uniform(0.85, 1.15) + rng.normal(0, radius * 0.08, 2)
                if rng.random() < 0.2:
                    category = int(rng.choice(category_ids[:20]))
            else:
                radius = float(np.exp(rng.uniform(np.log(3), np.log(100))))
                points = _polygon(rng, rng.uniform(0, width), rng.uniform(0, height), radius)
                category = int(rng.choice(category_ids[:20]))
            rle = mask_utils.merge(mask_utils.frPyObjects([points.ravel().tolist()], height, width))
            results.append({"image_id": image_id, "category_id": category, "score": round(float(rng.random()), 5),
                            "segmentation": {"size": [height, width], "counts": rle["counts"].decode()}})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": i, "name": str(i)} for i in category_ids]}
    return gt, results


def faster_coco_eval_ap(gt, results):
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(copy.deepcopy(gt))
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def bench_ap(args) -> None:
    gt, results = coco_case(args.ap_images)
    print(f"mask AP: {len(gt['images'])} images of 640x480, {len(gt['annotations'])} ground-truth objects, "
          f"{len(results)} detections")
    seconds = {}
    for name, function in (("metrics.instance.mask_ap (hotcoco)", lambda: instance.mask_ap(gt, results)),
                           ("pycocotools COCOeval", lambda: instance.pycocotools_evaluation(gt, results).stats),
                           ("faster-coco-eval", lambda: faster_coco_eval_ap(gt, results))):
        start = time.perf_counter()
        outcome = function()
        seconds[name] = time.perf_counter() - start
        stats = [outcome[k] for k in ("ap", "ap50", "ap75")] if isinstance(outcome, dict) else list(outcome[:3])
        print(f"  {name:36s} {seconds[name]:6.2f} s   AP / AP50 / AP75 = "
              + " / ".join(f"{v:.6f}" for v in stats))
    ratio = seconds["pycocotools COCOeval"] / seconds["metrics.instance.mask_ap (hotcoco)"]
    print(f"  ratio pycocotools / ours:            {ratio:6.1f}x")


def bench_error_analysis(args) -> None:
    rng = np.random.default_rng(0)
    bench_analysis([synthetic_pair(rng) for _ in range(args.images)], args.seconds)
    bench_bootstrap()


def bench_analysis(pairs, seconds: float) -> None:
    """analyze_image (its own match included, and given the match) against pq.image_counts, same process."""
    matches = [pq.match_image(*pair) for pair in pairs]
    counts = images_per_second(pq.image_counts, pairs, seconds)
    full = images_per_second(analysis.analyze_image, pairs, seconds)
    given = images_per_second(lambda *pair_and_match: analysis.analyze_image(*pair_and_match[:4],
                                                                             match=pair_and_match[4]),
                              [(*pair, match) for pair, match in zip(pairs, matches, strict=True)], seconds)
    print("error types + Boundary PQ + size bins (metrics.analysis.analyze_image):")
    print(f"  pq.image_counts:              {counts:8.1f} images/s")
    print(f"  analyze_image:                {full:8.1f} images/s  ({counts / full:.1f}x the time of plain PQ counts)")
    print(f"  analyze_image, match given:   {given:8.1f} images/s  (what the dump adds when it has the match)")


def bench_bootstrap(n_images: int = 2000, n_classes: int = 150, resamples: int = 1000) -> None:
    rng = np.random.default_rng(0)

    def counts():
        tp, fp, fn = (rng.poisson(rate, (n_images, n_classes)) for rate in (0.5, 0.3, 0.3))
        return np.stack([tp, fp, fn, tp * rng.uniform(0.6, 0.95, (n_images, n_classes))], axis=-1).astype(float)

    a, b = counts(), counts()
    isthing = np.arange(n_classes) < 100
    times = []
    for _ in range(3):
        start = time.perf_counter()
        bootstrap.paired_bootstrap(a, b, isthing, resamples=resamples)
        times.append(time.perf_counter() - start)
    print(f"paired bootstrap, {resamples} resamples of {n_images} images x {n_classes} classes (All/Things/Stuff and "
          f"per class): {min(times):.3f} s (best of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("pq", "analysis", "semantic", "ap"), help="run one part (default: all)")
    parser.add_argument("--images", type=int, default=16, help="distinct synthetic image pairs (pq)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per implementation")
    parser.add_argument("--ap-images", type=int, default=500, help="images of the mask AP case")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"load average {os.getloadavg()}")
    for part, function in (("pq", bench_pq), ("analysis", bench_error_analysis), ("semantic", bench_semantic),
                           ("ap", bench_ap)):
        if args.only in (None, part):
            function(args)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    if "--from-files" in sys.argv:  # scoring COCO panoptic files: bench/metrics_files.py
        from bench import metrics_files
        metrics_files.cli(sys.argv[1:], synthetic_pair)
    else:
        main()
