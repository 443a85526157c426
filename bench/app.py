"""Server-side speed of the comparison app on a large output folder, against the spec's targets.

Times the plain functions the app's events call (what the server spends, without the network):
- opening the folder and building the index (load_folder), in a fresh process each time so nothing is cached
  but the OS's file cache; and, for information, the background check of every annotation JSON that follows;
- a class filter (two classes, all of them, plus a content limit), over all images;
- a signed ranking by ΔPQ of two models over all images, top 20;
- all panels of one image (input, ground truth, every model, every error map, the A vs B map, encoded as PNG into
  the page's HTML), on images not seen before so no decoded map is reused; and the same plus the image's tables;
- the Errors view (errors by type and ΔPQ if fixed per model and per class of A and B), listing the images where
  a type costs the most, and the paired bootstrap of ΔPQ (1,000 resamples) behind the Classes view's intervals.

    python bench/app.py [FOLDER] [--images 2000] [--models 4] [--size 512x683] [--repeat 20] [--tasks]

With --tasks the generated folder also has semantic and instance ground truth (every model is then scored on the
three tasks: semantic_stats.csv, instance_stats.csv, the confusion matrix), and the Dataset tab's IoU / AP view and
the Confusion view are timed too.

Without FOLDER, or when it does not exist yet, a synthetic folder of that size is generated there first
(synthetic/folders.py; random label maps, about 15 minutes for 2,000 images on two cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script: the project, not bench/, comes first

from viewer import analysis, dataset, events, filters, navigation, tables  # noqa: E402
from viewer.index import check_annotations, load_folder  # noqa: E402
from viewer.panels import DisplayOptions, image_panels, legend_classes, panels_html  # noqa: E402

TARGETS = {"index": 2.0, "filter": 0.050, "ranking": 0.050, "panels": 0.300}
_LOAD = ("import sys, time; sys.path.insert(0, {root!r}); from viewer.index import load_folder; "
         "t = time.perf_counter(); load_folder({folder!r}); print(time.perf_counter() - t)")


def timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


def index_seconds(folder: Path, repeat: int) -> list[float]:
    """load_folder in fresh interpreters: the first run reads files from disk, later ones from the OS cache."""
    code = _LOAD.format(root=str(ROOT), folder=str(folder))
    return [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1]) for _ in range(repeat)]


def show_image(index, pos: int, models: list[str], options: DisplayOptions) -> str:
    panels, photo = image_panels(index, pos, models, options)
    return panels_html(panels, photo, legend_classes(index, pos, models), index.images[pos], options)


def show_image_and_tables(index, pos: int, models: list[str], options: DisplayOptions) -> None:
    show_image(index, pos, models, options)
    metrics = tables.image_metrics_table(index, pos, models)
    class_table = tables.image_class_table(index, pos, models)
    tables.style_differences(tables.pairwise_table(metrics)).to_html()
    tables.style_differences(tables.class_difference_table(class_table, models)).to_html()


def report(name: str, seconds: list[float], target: float | None, note: str = "") -> None:
    median, worst = statistics.median(seconds), max(seconds)
    verdict = "" if target is None else ("  OK" if median < target else "  OVER TARGET")
    limit = f"target < {target * 1000:.0f} ms" if target is not None else ""
    print(f"{name:<38} median {median * 1000:8.1f} ms   max {worst * 1000:8.1f} ms   n={len(seconds):<3} "
          f"{limit}{verdict}{'  ' + note if note else ''}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--size", default="512x683", help="HEIGHTxWIDTH of generated images")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="processes for generating a folder")
    parser.add_argument("--tasks", action="store_true", help="a folder with semantic and instance ground truth too")
    args = parser.parse_args(argv)

    folder = Path(args.folder) if args.folder else Path(tempfile.gettempdir()) / \
        f"viewer-bench-{args.images}x{args.models}-{args.size}{'-tasks' if args.tasks else ''}"
    if not (folder / "manifest.json").exists():
        from synthetic.folders import main as make_folder

        print(f"generating {folder} ({args.images} images x {args.models} models, {args.size}) ...", flush=True)
        make_folder([str(folder), "--images", str(args.images), "--models", str(args.models), "--size", args.size,
                     "--workers", str(args.workers), *(["--tasks"] if args.tasks else [])])

    index = load_folder(folder)
    models = index.models
    print(f"{folder}: {index.n_images} images x {len(models)} models ({', '.join(models)}), "
          f"{len(index.stats)} rows of segment_stats.csv, {len(index.problems)} problem(s)\n")

    report("open folder + build index", index_seconds(folder, max(3, args.repeat // 4)), TARGETS["index"],
           "fresh process each")
    report("background check of all annotations", [timed(check_annotations, load_folder(folder))], None,
           "after start-up, not waited for")

    gt_counts = index.instance_counts["gt"]
    common = [index.classes.classes[c].id for c in (-gt_counts.astype(bool).sum(axis=0)).argsort()[:40]]
    filter_times, sizes = [], []
    for k in range(args.repeat):
        image_filter = filters.ImageFilter(classes=(common[k % 40], common[(k * 7 + 1) % 40]), match="all",
                                           min_instances=2)
        filter_times.append(timed(filters.filter_images, index, image_filter))
        sizes.append(len(filters.filter_images(index, image_filter)))
    report("class filter (2 classes + limit)", filter_times, TARGETS["filter"],
           f"{int(statistics.median(sizes))} images pass (median)")

    everything = list(range(index.n_images))
    orders = list(filters.ORDERS)
    rank_times = [timed(filters.rank_images, index, everything, models[k % len(models)],
                        models[(k + 1) % len(models)], orders[k % 3], "pq", 20) for k in range(args.repeat)]
    report("signed ranking by ΔPQ, top 20", rank_times, TARGETS["ranking"], f"over {len(everything)} images")

    options = DisplayOptions(mode="overlay", error_maps=True, pair=(models[0], models[1]) if len(models) > 1 else None)
    step = max(1, index.n_images // (2 * args.repeat + 1))
    positions = [p % index.n_images for p in range(0, step * 2 * args.repeat, step)]
    panel_times = [timed(show_image, index, p, models, options) for p in positions[:args.repeat]]
    n_panels = len(image_panels(index, positions[0], models, options)[0])
    report("all panels of one image", panel_times, TARGETS["panels"],
           f"{n_panels} panels, first view of each image")
    full_times = [timed(show_image_and_tables, index, p, models, options) for p in positions[args.repeat:]]
    report("all panels + the image's tables", full_times, TARGETS["panels"], "what 'next image' costs the server")

    pair = models[:2]
    repeat = max(3, args.repeat // 4)
    report("errors view (per model + per class)", [timed(errors_view, index, models, pair) for _ in range(repeat)],
           None, f"{len(models)} models, classes of {' and '.join(pair)}")
    fixes = analysis.FIX_CHOICES
    report("images where a type costs most", [timed(analysis.images_by_fix, index, models[k % len(models)],
                                                    fixes[k % len(fixes)]) for k in range(args.repeat)], None,
           "top 20 over all images")
    if len(models) > 1:
        report("paired bootstrap of ΔPQ (1,000)", [timed(dataset._bootstrap.__wrapped__, index, *pair,
                                                         tuple(range(index.n_images)), 1000, k)
                                                   for k in range(repeat)], None, "All/Things/Stuff and per class")
    if len(index.semantic_stats):
        view = navigation.new_view(everything)
        for metric in ("IoU", "AP"):
            query = events.DatasetQuery(models, metric, model_a=models[0], model_b=models[-1])
            report(f"dataset view by {metric} (tables + charts)", [timed(events.dataset_page, index, view, query)
                                                                   for _ in range(repeat)], None, "all images")
        report("confusion view (matrix, heatmap, top)", [timed(events.confusion_page, index, view,
                                                               models[k % len(models)], "all")
                                                         for k in range(repeat)], None, "first one reads the CSV")
        report("images of a confusion", [timed(dataset.confusion_images, index, models[0], *confusion(index, k))
                                         for k in range(args.repeat)], None, "top 20")
    print(f"\nload average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min)")


def confusion(index, k: int) -> tuple[int, int]:
    top = dataset.top_confusions(index, index.models[0])
    row = top.iloc[k % max(len(top), 1)]
    return int(row["gt id"]), int(row["predicted id"])


def errors_view(index, models: list[str], pair: list[str]) -> None:
    analysis.error_summary(index, models)
    analysis.class_errors(index, pair)


if __name__ == "__main__":
    main()
