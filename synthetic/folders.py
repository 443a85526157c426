"""Synthetic output folders for the viewer's tests and benchmark, written through the output-folder contract.

Ground truth is a coarse grid of cells upsampled to the image size (stuff cells of one class merge into one segment,
each thing cell is an instance, some cells are void); a prediction is the same grid with some cells relabelled,
dropped to void or swapped, upsampled with jittered cell borders so IoUs vary. Aggregates come from
`build_aggregates`, so the folder's metrics (and its error analysis) are the product's own. With `sweep`, each
prediction also gets a made-up threshold sweep whose default setting holds its real counts.

    python -m synthetic.folders OUT [--images 2000] [--models 4] [--size 512x683] [--workers 2] [--tasks]
    python -m synthetic.folders OUT --sample   # the three real ADE20K photos of tests/data, synthetic predictions
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from dump.aggregates import build_aggregates
from dump.folder import (
    GT,
    Layout,
    new_manifest,
    read_annotation,
    write_annotation,
    write_class_names,
    write_manifest,
    write_panoptic_png,
)
from dump.sweep import SweepGrid, sweep_record
from eomt import atomic
from eomt.classes import ClassTable, ade20k_classes
from eomt.render import render_panoptic, segments_to_class_map
from metrics import pq
from metrics.coco_panoptic import read_png

MODELS = ("alpha", "beta", "gamma")  # the models of a synthetic folder, best first
SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "ade20k_sample"


def ade20k_table() -> ClassTable:
    return ClassTable(ade20k_classes())


def _upsample(grid: np.ndarray, height: int, width: int, rng: np.random.Generator | None) -> np.ndarray:
    """Nearest upsampling of a coarse grid; with `rng`, cell borders move by up to a third of a cell."""
    rows = np.linspace(0, grid.shape[0], height, endpoint=False)
    cols = np.linspace(0, grid.shape[1], width, endpoint=False)
    if rng is not None:
        rows = rows + rng.uniform(-0.33, 0.33, size=grid.shape[0] + 1)[rows.astype(int)]
        cols = cols + rng.uniform(-0.33, 0.33, size=grid.shape[1] + 1)[cols.astype(int)]
    rows = np.clip(rows, 0, grid.shape[0] - 1).astype(int)
    cols = np.clip(cols, 0, grid.shape[1] - 1).astype(int)
    return grid[rows[:, None], cols[None, :]]


def _segments_from_cells(cell_class: np.ndarray, isthing: dict[int, bool], rng: np.random.Generator):
    """Segment id per cell (0 = void) and the segments: stuff cells of a class share one random id."""
    cell_segment = np.zeros(cell_class.shape, dtype=np.int64)
    used: set[int] = {0}
    stuff_id: dict[int, int] = {}
    segments = []

    def new_id() -> int:
        while True:
            value = int(rng.integers(1, 1 << 24))
            if value not in used:
                used.add(value)
                return value

    for (r, c), category_id in np.ndenumerate(cell_class):
        if category_id < 0:
            continue
        category_id = int(category_id)
        if not isthing[category_id] and category_id in stuff_id:
            cell_segment[r, c] = stuff_id[category_id]
            continue
        segment_id = new_id()
        if not isthing[category_id]:
            stuff_id[category_id] = segment_id
        cell_segment[r, c] = segment_id
        segments.append({"id": segment_id, "category_id": category_id})
    return cell_segment, segments


def _segments_info(segment_map: np.ndarray, segments: list[dict], isthing: dict[int, bool],
                   scores: np.ndarray | None = None) -> list[dict]:
    """COCO segments_info of the segments that kept pixels after upsampling."""
    from scipy import ndimage

    ids = np.array([s["id"] for s in segments], dtype=np.int64)
    order = np.argsort(ids)
    position = np.minimum(np.searchsorted(ids[order], segment_map), max(len(ids) - 1, 0))
    compact = np.where(ids[order][position] == segment_map, order[position] + 1, 0) if len(ids) else \
        np.zeros(segment_map.shape, dtype=np.int64)
    areas = np.bincount(compact.ravel(), minlength=len(ids) + 1)
    boxes = ndimage.find_objects(compact, max_label=len(ids))
    info = []
    for k, segment in enumerate(segments):
        if areas[k + 1] == 0:
            continue
        rows, cols = boxes[k]
        entry = {"id": segment["id"], "category_id": segment["category_id"], "iscrowd": 0,
                 "isthing": int(isthing[segment["category_id"]]), "area": int(areas[k + 1]),
                 "bbox": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start]}
        if scores is not None:
            entry["score"] = round(float(scores[k]), 6)
        info.append(entry)
    return info


def _photo(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour gradient with mild noise: compresses like a photo-sized PNG without costing minutes."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    base = rng.uniform(40, 200, size=(1, 1, 3)).astype(np.float32)
    picture = base + 50 * y * rng.uniform(-1, 1, 3) + 50 * x * rng.uniform(-1, 1, 3)
    picture += rng.normal(0, 4, size=(height, width, 1)).astype(np.float32)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _perturb(cell_class: np.ndarray, pool: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """A model's view of the grid: the better the `quality`, the fewer relabelled, dropped or invented cells."""
    pred = cell_class.copy()
    roll = rng.random(pred.shape)
    wrong = roll > quality
    pred[wrong] = rng.choice(pool, size=int(wrong.sum()))
    pred[(roll > quality) & (rng.random(pred.shape) < 0.3)] = -1
    # Models rarely leave pixels unassigned where ground truth is void: fill most void cells.
    void = cell_class < 0
    fill = void & (rng.random(pred.shape) < 0.7)
    pred[fill] = rng.choice(pool, size=int(fill.sum()))
    return pred


def write_image(layout: Layout, index: int, models: list[str], classes: ClassTable, pool: np.ndarray,
                size: tuple[int, int], seed: int, photo: np.ndarray | None = None,
                gt_grid: np.ndarray | None = None, grid: tuple[int, int] = (6, 8)) -> None:
    """All files of one image: input, ground truth and every model's prediction (renders, COCO PNG + JSON)."""
    rng = np.random.default_rng([seed, index])
    height, width = size
    isthing, colors = classes.isthing, classes.palette
    image = layout.image_name(index)
    if gt_grid is None:
        # Each image shows a few of the pool's classes, so that class filters select some images and not others.
        present = rng.choice(pool, size=int(rng.integers(2, min(len(pool), 8) + 1)), replace=False)
        gt_grid = rng.choice(present, size=grid)
        gt_grid[rng.random(grid) < 0.08] = -1
    atomic.write_png(layout.input_png(image), photo if photo is not None else _photo(height, width, rng))

    sources = [(GT, gt_grid, None)]
    for k, model in enumerate(models):
        quality = 0.9 - 0.12 * k + rng.uniform(-0.1, 0.1)
        sources.append((model, _perturb(gt_grid, pool, rng, quality), rng))
    for source, cells, jitter in sources:
        cell_segment, segments = _segments_from_cells(cells, isthing, rng)
        segment_map = _upsample(cell_segment, height, width, jitter)
        _write_source(layout, index, source, segment_map, segments, isthing, colors, rng)


def _write_source(layout: Layout, index: int, source: str, segment_map: np.ndarray, segments, isthing: dict,
                  colors: np.ndarray, rng: np.random.Generator) -> None:
    """One source's files of one image: its render, COCO panoptic PNG and annotation (predictions get scores)."""
    image = layout.image_name(index)
    scores = None if source == GT else rng.uniform(0.5, 1.0, size=len(segments))
    info = _segments_info(segment_map, segments, isthing, scores)
    class_map = segments_to_class_map(segment_map, info)
    picture = render_panoptic(class_map, segment_map, colors)
    atomic.write_png(layout.target_png(image) if source == GT else layout.pred_png(image, source), picture)
    write_panoptic_png(layout.panoptic_png(image, source), segment_map)
    write_annotation(layout, image, source, {"image_id": index, "file_name": f"{image}.png", "segments_info": info})


def _manifest(layout: Layout, models: list[str], classes: ClassTable, sizes: list[tuple[int, int]],
              keys: list[str], sources: dict[str, str] | None = None) -> dict:
    images = [{"index": i, "key": keys[i], "stem": keys[i], "width": w, "height": h}
              for i, (h, w) in enumerate(sizes)]
    model_entries = [{"name": m, "source": (sources or {}).get(m, f"synthetic/{m}"), "preset": None,
                      "img_size": None, "device": "cpu", "dtype": "fp32", "images_done": len(sizes),
                      "seconds_per_image": 0.0} for m in models]
    return new_manifest({"name": "synthetic", "split": "validation", "root": None}, images, model_entries,
                        classes.entries())


def _write_chunk(args) -> None:
    root, n_images, start, stop, models, classes, pool, size, seed, grid = args
    layout = Layout(root, n_images)
    for index in range(start, stop):
        write_image(layout, index, models, classes, pool, size, seed, grid=grid)


SWEEP_GRID = SweepGrid((0.5, 0.6, 0.7, 0.8, 0.9), (0.7, 0.8), default=(0.8, 0.8))


def _swept(counts: dict[int, pq.CategoryCounts], score: float, overlap: float) -> dict[int, pq.CategoryCounts]:
    """Made-up counts of another merge setting: a lower score threshold adds false positives, a higher one turns
    matches into false negatives; a higher overlap threshold loses a little IoU. The default keeps `counts`."""
    steps = round((score - 0.8) * 10)
    result = {}
    for category_id, c in counts.items():
        lost = min(c.tp, max(steps, 0))
        scale = (c.tp - lost) / c.tp if c.tp else 0.0
        result[category_id] = pq.CategoryCounts(c.tp - lost, c.fp + max(-steps, 0), c.fn + lost,
                                                c.iou_sum * scale * (1 - 0.05 * round((overlap - 0.8) * 10)))
    return result


def write_sweeps(layout: Layout, images: list[str], models: list[str], grid: SweepGrid = SWEEP_GRID) -> None:
    """Per-image sweep files of made-up counts (the default setting's are the image's real ones)."""
    for image in images:
        gt = read_annotation(layout, image, GT)
        for model in models:
            pred = read_annotation(layout, image, model)
            if gt is None or pred is None:
                continue
            counts = pq.image_counts(read_png(layout.panoptic_png(image, GT)), gt["segments_info"],
                                     read_png(layout.panoptic_png(image, model)), pred["segments_info"])
            counts = {k: pq.CategoryCounts(c.tp, c.fp, c.fn, c.iou_sum) for k, c in counts.items()}
            atomic.write_json(layout.sweep_json(image, model),
                              sweep_record(grid, [_swept(counts, s, o) for s, o in grid.settings]))


def write_task_ground_truth(layout: Layout, images: list[str]) -> None:
    """Semantic and instance ground truth of every image from its panoptic one (the class map; the thing segments),
    so that the aggregates score the panoptic models on the semantic and instance tasks too."""
    from dump.records import instance_gt_record
    from metrics.instance import annotations_from_panoptic
    from metrics.semantic import semantic_from_panoptic

    for index, image in enumerate(images):
        gt = read_annotation(layout, image, GT)
        if gt is None:
            continue
        segment_map = read_png(layout.panoptic_png(image, GT))
        atomic.write_png(layout.semantic_png(image, GT), semantic_from_panoptic(segment_map, gt["segments_info"]))
        entry = {"id": index, "file_name": f"{image}.png", "width": segment_map.shape[1],
                 "height": segment_map.shape[0]}
        annotations = [{k: v for k, v in a.items() if k != "id"} for a in
                       annotations_from_panoptic(segment_map, gt["segments_info"], index)]
        atomic.write_json(layout.instance_json(image, GT), instance_gt_record(entry, annotations))


def make_folder(root: str | Path, n_images: int = 6, models: tuple[str, ...] = MODELS,
                size: tuple[int, int] = (48, 64), seed: int = 0, n_classes: int = 12, workers: int = 1,
                grid: tuple[int, int] = (6, 8), aggregates: bool = True, sweep: bool = True,
                tasks: bool = False) -> Path:
    """A complete output folder of `n_images` synthetic images and `models` predictions; returns its path.

    The classes are the full ADE20K table; images draw from `n_classes` of them (things and stuff mixed), so
    filters have something to find. `sweep`: per-image threshold sweeps (write_sweeps). `tasks`: semantic and
    instance ground truth too (write_task_ground_truth), so the panoptic models get every task's files."""
    root = Path(root)
    classes = ade20k_table()
    rng = np.random.default_rng(seed)
    things = [c.id for c in classes if c.isthing]
    stuff = [c.id for c in classes if not c.isthing]
    n_things = min(len(things), max(1, n_classes // 2))
    pool = np.array(sorted(rng.choice(things, n_things, replace=False).tolist()
                           + rng.choice(stuff, n_classes - n_things, replace=False).tolist()))
    layout = Layout(root, n_images)
    keys = [f"synthetic_{i:08d}" for i in range(n_images)]
    write_manifest(layout, _manifest(layout, list(models), classes, [size] * n_images, keys))
    write_class_names(layout, classes)
    chunks = np.array_split(np.arange(n_images), max(1, workers * 8))
    jobs = [(root, n_images, int(c[0]), int(c[-1]) + 1, list(models), classes, pool, size, seed, grid)
            for c in chunks if len(c)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as executor:
            list(executor.map(_write_chunk, jobs))
    else:
        for job in jobs:
            _write_chunk(job)
    if sweep:
        write_sweeps(layout, [layout.image_name(i) for i in range(n_images)], list(models))
    if tasks:
        write_task_ground_truth(layout, [layout.image_name(i) for i in range(n_images)])
        manifest = _manifest(layout, list(models), classes, [size] * n_images, keys)
        manifest["dataset"]["ground_truth_tasks"] = ["panoptic", "semantic", "instance"]
        write_manifest(layout, manifest)
    if aggregates:
        build_aggregates(root, workers=max(1, workers))
    return root


def make_sample_folder(root: str | Path, models: tuple[str, ...] = ("large", "base", "small"),
                       seed: int = 0) -> Path:
    """The three real ADE20K validation photos of tests/data with ground truth from their semantic annotations
    (stuff as one segment per class, things split into connected components) and synthetic predictions."""
    from PIL import Image
    from scipy import ndimage

    root = Path(root)
    classes = ade20k_table()
    isthing, colors = classes.isthing, classes.palette
    photos = sorted((SAMPLE / "images").glob("*.jpg"))
    layout = Layout(root, len(photos))
    sizes = []
    for index, path in enumerate(photos):
        rng = np.random.default_rng([seed, index])
        photo = np.asarray(Image.open(path).convert("RGB"))
        semantic = np.asarray(Image.open(SAMPLE / "annotations" / f"{path.stem}.png")).astype(np.int32) - 1
        sizes.append(photo.shape[:2])
        image = layout.image_name(index)
        atomic.write_png(layout.input_png(image), photo)
        gt_map, gt_segments = _semantic_to_panoptic(semantic, isthing, ndimage)
        for k, source in enumerate([GT, *models]):
            if source == GT:
                segment_map, segments = gt_map, gt_segments
            else:
                segment_map, segments = _degrade(gt_map, gt_segments, semantic, rng, 0.9 - 0.15 * k, ndimage)
            _write_source(layout, index, source, segment_map, segments, isthing, colors, rng)
    write_manifest(layout, _manifest(layout, list(models), classes, sizes, [p.stem for p in photos]))
    write_class_names(layout, classes)
    build_aggregates(root, workers=1)
    return root


def _semantic_to_panoptic(semantic: np.ndarray, isthing: dict[int, bool], ndimage):
    segment_map = np.zeros(semantic.shape, dtype=np.int64)
    segments = []
    for category_id in np.unique(semantic):
        if category_id < 0:
            continue
        mask = semantic == category_id
        parts, n = ndimage.label(mask) if isthing[int(category_id)] else (mask.astype(int), 1)
        for part in range(1, n + 1):
            segment_id = len(segments) + 1
            segment_map[parts == part] = segment_id
            segments.append({"id": segment_id, "category_id": int(category_id)})
    return segment_map, segments


def _degrade(gt_map, gt_segments, semantic, rng, quality, ndimage):
    """A plausible prediction: segments eroded or dilated, some relabelled, void mostly filled in."""
    segment_map = gt_map.copy()
    segments = []
    for segment in gt_segments:
        category_id = segment["category_id"]
        if rng.random() > quality:
            category_id = int(rng.choice([s["category_id"] for s in gt_segments]))
        segments.append({"id": segment["id"], "category_id": category_id})
    structure = np.ones((3, 3), bool)
    for segment in gt_segments:
        mask = gt_map == segment["id"]
        steps = int(rng.integers(1, 6))
        grown = ndimage.binary_dilation(mask, structure, iterations=steps) if rng.random() < 0.5 else mask
        segment_map[grown & (rng.random() < 0.8)] = segment["id"]
    void = segment_map == 0
    if void.any():
        # Fill void with the nearest segment, as a model does.
        _, (rows, cols) = ndimage.distance_transform_edt(void, return_indices=True)
        segment_map = segment_map[rows, cols]
    present = set(np.unique(segment_map).tolist())
    return segment_map, [s for s in segments if s["id"] in present]


def break_folder(root: str | Path) -> dict:
    """Damages a folder made by `make_folder` the ways the robustness rules name; returns what was broken."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    layout = Layout(root, len(manifest["images"]))
    models = [m["name"] for m in manifest["models"]]
    images = [layout.image_name(e["index"]) for e in manifest["images"]]
    broken = {"missing_prediction": (images[1], models[-1]), "truncated_png": (images[2], models[0]),
              "malformed_json": (images[3], models[0]), "no_ground_truth": images[4]}
    image, model = broken["missing_prediction"]
    layout.panoptic_png(image, model).unlink()
    layout.annotation_json(image, model).unlink()
    layout.pred_png(image, model).unlink()
    image, model = broken["truncated_png"]
    data = layout.panoptic_png(image, model).read_bytes()
    layout.panoptic_png(image, model).write_bytes(data[: len(data) // 2])
    image, model = broken["malformed_json"]
    layout.annotation_json(image, model).write_text('{"image_id": 3, "segments_info": [')
    layout.panoptic_json(model).write_text("{not json")
    image = broken["no_ground_truth"]
    layout.panoptic_png(image, GT).unlink()
    layout.annotation_json(image, GT).unlink()
    layout.target_png(image).unlink()
    return broken


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--size", default="512x683", help="HEIGHTxWIDTH")
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", action="store_true", help="the three real ADE20K photos instead")
    parser.add_argument("--tasks", action="store_true",
                        help="semantic and instance ground truth too: the models are scored on every task")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.sample:
        make_sample_folder(args.out)
    else:
        height, width = (int(v) for v in args.size.lower().split("x"))
        names = ("large", "base", "small", "tiny", "huge", "giant")[: args.models]
        if args.models > 6:
            names = tuple(f"model{k}" for k in range(args.models))
        make_folder(args.out, n_images=args.images, models=names, size=(height, width), n_classes=args.classes,
                    workers=args.workers, grid=(8, 10), tasks=args.tasks)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
