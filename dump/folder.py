"""The output folder: the contract between predict_dump.py (writer) and gradio_app.py (reader).

Every file name of the folder is spelled here and nowhere else; docs/output-folder.md describes the contents.

    manifest.json, class_names.txt, failures.json
    val_XXXX_input.png, val_XXXX_target.png, val_XXXX_pred_<model>.png
    panoptic/gt.json, panoptic/gt/val_XXXX.png (+ val_XXXX.json: that image's annotation, written last)
    panoptic/<model>.json, panoptic/<model>/val_XXXX.png (+ val_XXXX.json)
    panoptic/<model>/val_XXXX.analysis.json, panoptic/<model>/val_XXXX.sweep.json (version 2)
    segment_stats.csv, instance_counts.json, analysis_stats.csv, segment_errors.csv, sweep.json (version 2)
    semantic/gt/val_XXXX.png, semantic/<model>/val_XXXX.png (semantic models) + val_XXXX.json, semantic/<model>.json
    instance/gt/val_XXXX.json, instance/<model>/val_XXXX.json, instance/gt.json, instance/<model>.json
    semantic_stats.csv, semantic_confusion.csv, instance_stats.csv, task_metrics.json (version 2, tasks)

The per-image `panoptic/<x>/val_XXXX.json` files hold each image's COCO annotation (`segments_info`) as soon as the
image is done; their presence marks the image finished, which is what makes a killed dump resumable. The
`panoptic/<x>.json` files are the COCO panoptic JSONs assembled from them. Beside a model's annotation, and written
before it, `val_XXXX.analysis.json` holds that image's error analysis (metrics.analysis) and, with `--sweep`,
`val_XXXX.sweep.json` its PQ counts per post-processing setting.

Every model runs its own task (the manifest's model entry says which: "panoptic", "semantic" or "instance"; no
"task" means panoptic). A model's semantic numbers come from its semantic map (a panoptic model's class map:
"panoptic -> semantic"), its instance numbers from its instances (a panoptic model's thing segments with their
scores); `semantic/<model>/val_XXXX.json` and `instance/<model>/val_XXXX.json` hold them per image (dump.records),
and each task has its own marker file that says an image is done (`marker`).

Version 2 added the analysis files and the task files; version 1 folders are read as they are (readers compute what is missing, and
`predict_dump.py --out DIR --reindex` adds the files). `read_manifest` is the one place versions are checked.

Category ids everywhere are the contiguous class ids of the model (ADE20K: 0..149, the class table's `id`), so a
name is always looked up by the same id the network predicts.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eomt import atomic
from eomt.classes import ClassTable
from metrics.analysis import ANALYSIS_COLUMNS
from metrics.coco_panoptic import id2rgb, load_json

FORMAT = "eomt-dump"
VERSION = 2  # what this program writes
READABLE_VERSIONS = (1, 2)  # 2: the analysis files (analysis_stats.csv, segment_errors.csv, sweep.json)
GT = "gt"  # name of the ground-truth entry under panoptic/
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

MANIFEST = "manifest.json"
CLASS_NAMES = "class_names.txt"
FAILURES = "failures.json"
SEGMENT_STATS = "segment_stats.csv"
INSTANCE_COUNTS = "instance_counts.json"
SEGMENT_STATS_COLUMNS = ("image", "model", "category_id", "tp", "fp", "fn", "iou_sum", "gt_segments", "pred_segments")
ANALYSIS_STATS = "analysis_stats.csv"
ANALYSIS_STATS_COLUMNS = ("image", "model", "category_id", *ANALYSIS_COLUMNS)
SEGMENT_ERRORS = "segment_errors.csv"
SEGMENT_ERRORS_COLUMNS = ("image", "model", "side", "id", "category_id", "type", "linked_id")
SWEEP = "sweep.json"
SEMANTIC_STATS = "semantic_stats.csv"
SEMANTIC_STATS_COLUMNS = ("image", "model", "source_task", "category_id", "intersection", "union", "gt_pixels",
                          "pred_pixels")
SEMANTIC_CONFUSION = "semantic_confusion.csv"
SEMANTIC_CONFUSION_COLUMNS = ("image", "model", "source_task", "gt_category_id", "pred_category_id", "pixels")
INSTANCE_STATS = "instance_stats.csv"
INSTANCE_STATS_COLUMNS = ("image", "model", "source_task", "category_id", "tp50", "fp50", "fn50", "tp75", "fp75",
                          "fn75", "gt_instances", "pred_instances", "ap50", "ap75")
INSTANCE_AP_COLUMNS = ("ap50", "ap75")  # added later: a folder written before has the other columns only
TASK_METRICS = "task_metrics.json"
# Derived from the per-image files by dump.aggregates.build_aggregates (and --reindex).
AGGREGATE_FILES = (SEGMENT_STATS, INSTANCE_COUNTS, ANALYSIS_STATS, SEGMENT_ERRORS, SWEEP, SEMANTIC_STATS,
                   SEMANTIC_CONFUSION, INSTANCE_STATS, TASK_METRICS)
TASKS = ("panoptic", "semantic", "instance")
TASK_FOLDERS = ("panoptic", "semantic", "instance")  # one per task, under the output folder
NO_CLASS = -1  # predicted category of pixels a prediction leaves without a class (semantic_confusion.csv)
PRESENCE_SCORE = 0.5  # an instance counts as present (class filters, renders) from this score on


class OutputError(RuntimeError):
    """The output folder cannot be written (permissions, a full disk, a file where a folder should be): the run
    stops, and the files already written stay."""


def os_error_text(error: OSError) -> str:
    """An OSError as `path: problem`, without errno numbers or a traceback."""
    path = error.filename2 or error.filename
    return f"{path}: {error.strerror}" if path and error.strerror else str(error)


class FolderError(ValueError):
    """An output folder that cannot be used: names the file and the problem."""


def check_model_name(name: str) -> str:
    """The name, when it can name a model's files: `panoptic/<name>/` and `panoptic/<name>.json` must not be
    another model's (or the ground truth's) files, so `gt` and names ending in `.json` are refused."""
    if not isinstance(name, str) or not MODEL_NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} is not allowed: use letters, digits, '.', '_' and '-', starting "
                         "with a letter or digit")
    if name.lower() == GT or name.lower().endswith(".json"):
        raise ValueError(f"model name {name!r} is not allowed: {GT!r} names the ground truth, and a name ending "
                         "in .json would collide with another model's (or the ground truth's) JSON file")
    return name


def name_key(name: str) -> str:
    """What two model names must differ in: case-insensitive file systems (macOS, Windows) take A and a as the
    same file."""
    return name.casefold()


def index_width(n_images: int) -> int:
    return max(4, len(str(max(n_images - 1, 0))))


@dataclass(frozen=True)
class Layout:
    """Paths inside one output folder of `n_images` images."""

    root: Path
    n_images: int

    def __init__(self, root: str | Path, n_images: int):
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "n_images", int(n_images))

    def image_name(self, index: int) -> str:
        return f"val_{index:0{index_width(self.n_images)}d}"

    def file(self, name: str) -> Path:
        return self.root / name

    def input_png(self, image: str) -> Path:
        return self.root / f"{image}_input.png"

    def target_png(self, image: str) -> Path:
        return self.root / f"{image}_target.png"

    def pred_png(self, image: str, model: str) -> Path:
        return self.root / f"{image}_pred_{model}.png"

    # COCO panoptic files; `source` is GT or a model name.
    def panoptic_json(self, source: str) -> Path:
        return self.root / "panoptic" / f"{source}.json"

    def panoptic_dir(self, source: str) -> Path:
        return self.root / "panoptic" / source

    def panoptic_png(self, image: str, source: str) -> Path:
        return self.panoptic_dir(source) / f"{image}.png"

    def annotation_json(self, image: str, source: str) -> Path:
        return self.panoptic_dir(source) / f"{image}.json"

    def analysis_json(self, image: str, model: str) -> Path:
        return self.panoptic_dir(model) / f"{image}.analysis.json"

    def sweep_json(self, image: str, model: str) -> Path:
        return self.panoptic_dir(model) / f"{image}.sweep.json"

    # The other tasks' files; `source` is GT or a model name.
    def task_dir(self, task: str, source: str) -> Path:
        return self.root / task / source

    def semantic_png(self, image: str, source: str) -> Path:
        """uint8 class map, 255 where ignored (GT) or without a class (prediction)."""
        return self.task_dir("semantic", source) / f"{image}.png"

    def semantic_json(self, image: str, model: str) -> Path:
        return self.task_dir("semantic", model) / f"{image}.json"

    def confusion_json(self, model: str) -> Path:
        return self.root / "semantic" / f"{model}.json"

    def instance_json(self, image: str, source: str) -> Path:
        return self.task_dir("instance", source) / f"{image}.json"

    def coco_instance_json(self, source: str) -> Path:
        """COCO instance ground truth (GT) or a model's COCO results, for pycocotools."""
        return self.root / "instance" / f"{source}.json"

    def marker(self, image: str, model: str, task: str) -> Path:
        """The per-image file written last for a model of `task`: its presence means the image is done."""
        return {"panoptic": self.annotation_json, "semantic": self.semantic_json,
                "instance": self.instance_json}[task](image, model)


def model_task(entry: dict) -> str:
    """The task a manifest model entry ran (entries written before tasks existed are panoptic)."""
    return entry.get("task") or "panoptic"


def ground_truth_tasks(manifest: dict) -> tuple[str, ...]:
    """The tasks the folder holds ground truth of (a folder written before tasks existed: panoptic, when it has
    ground truth at all)."""
    dataset = manifest.get("dataset") or {}
    if "ground_truth_tasks" in dataset:
        return tuple(t for t in TASKS if t in dataset["ground_truth_tasks"])
    return ("panoptic",) if dataset.get("has_ground_truth", True) else ()


def category_ids(manifest: dict) -> dict[int, int]:
    """Class id -> the category id of the folder's COCO instance files: the dataset's own (COCO: 1..90 with gaps)
    where the manifest records them, else the class id."""
    recorded = (manifest.get("dataset") or {}).get("category_ids")
    classes = [int(c["id"]) for c in manifest["classes"]]
    return dict(zip(classes, recorded, strict=True)) if recorded else {c: c for c in classes}


def image_id(entry: dict) -> int:
    """The id a manifest image entry has in the COCO instance files (the dataset's own; else its index)."""
    return int(entry.get("image_id", entry["index"]))


def write_class_names(layout: Layout, classes: ClassTable) -> None:
    atomic.write_text(layout.file(CLASS_NAMES), "".join(f"{c.id}\t{c.name}\n" for c in classes))


def csv_text(header, rows) -> str:
    """The folder's CSV files as text: a header row, then the rows, "\n" line ends, None as an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def read_json_file(path: Path) -> Any:
    """JSON from `path`, or FolderError naming the file and what is wrong with it."""
    return load_json(path, FolderError)


def read_manifest(root: str | Path) -> dict:
    """The manifest of an output folder, checked for the fields readers rely on."""
    path = Path(root) / MANIFEST
    manifest = read_json_file(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FolderError(f"{path}: not an {FORMAT} manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise FolderError(f"{path}: format version {manifest.get('version')!r}, this program reads "
                          f"{' and '.join(map(str, READABLE_VERSIONS))}")
    for key in ("dataset", "images", "models", "classes"):
        if key not in manifest:
            raise FolderError(f"{path}: field {key!r} missing")
    return manifest


def write_manifest(layout: Layout, manifest: dict) -> None:
    atomic.write_json(layout.file(MANIFEST), manifest, indent=1)


def new_manifest(dataset: dict, images: list[dict], models: list[dict], classes: list[dict]) -> dict:
    return {"format": FORMAT, "version": VERSION, "dataset": dataset, "images": images, "models": models,
            "classes": classes}


def read_annotation(layout: Layout, image: str, source: str) -> dict | None:
    """The finished annotation of one image for GT or a model, None while that image is not done."""
    path = layout.annotation_json(image, source)
    if not path.exists():
        return None
    return read_json_file(path)


def write_panoptic_png(path: Path, ids) -> None:
    """An (H, W) segment id map as a COCO panoptic RGB PNG."""
    atomic.write_png(path, id2rgb(ids))


def write_annotation(layout: Layout, image: str, source: str, annotation: dict) -> None:
    atomic.write_json(layout.annotation_json(image, source), annotation)


def read_failures(layout: Layout) -> list[dict]:
    path = layout.file(FAILURES)
    if not path.exists():
        return []
    data = read_json_file(path)
    return data.get("failures", []) if isinstance(data, dict) else []


def write_failures(layout: Layout, failures: list[dict]) -> None:
    atomic.write_json(layout.file(FAILURES), {"failures": failures}, indent=1)
