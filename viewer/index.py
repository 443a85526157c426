"""Opens an output folder once: what it holds, what is missing or broken, and the per-image numbers.

Opening reads the manifest, one listing per source folder, `segment_stats.csv`, `analysis_stats.csv`,
`sweep.json`, and for the other tasks `semantic_stats.csv`, `instance_stats.csv` and `task_metrics.json`, nothing
per image: the instances per class that filters need are in segment_stats.csv (gt_segments,
pred_segments), so the per-image annotation JSONs are read only for pairs that file does not cover, and otherwise
when an image is shown. That is what keeps opening a 2,000-image folder under two seconds. Filters and rankings
work on numpy arrays indexed by image position (the image's row in the manifest).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from dump.folder import (
    ANALYSIS_STATS,
    ANALYSIS_STATS_COLUMNS,
    GT,
    INSTANCE_AP_COLUMNS,
    INSTANCE_STATS,
    INSTANCE_STATS_COLUMNS,
    MANIFEST,
    SEGMENT_STATS,
    SEGMENT_STATS_COLUMNS,
    SEMANTIC_STATS,
    SEMANTIC_STATS_COLUMNS,
    SWEEP,
    TASK_METRICS,
    FolderError,
    Layout,
    check_model_name,
    ground_truth_tasks,
    model_task,
    name_key,
    read_failures,
    read_json_file,
    read_manifest,
)
from eomt.classes import ClassInfo, ClassTable
from metrics import pq
from metrics.analysis import ANALYSIS_COLUMNS, FLOAT_COLUMNS, AnalysisCounts
from viewer import task_stats
from viewer.markup import text

METRICS = ("pq", "sq", "rq")
MAX_IMAGES = 10**7  # image indices name files (val_XXXX): any dataset has fewer
_SHOWN = 5  # names listed per problem before "and N more"
REINDEX = "python predict_dump.py --out {root} --reindex"  # adds what an older folder lacks


def source_label(source: str) -> str:
    return "ground truth" if source == GT else f"model {source}"


class Findings:
    """Problems found after the folder was opened (the background sweep of the annotation JSONs). One thread
    adds, every session reads: the only mutable part of an opened folder, so it carries its own lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self._notes: dict[int, list[str]] = {}

    def add(self, problem: str, notes: dict[int, str]) -> None:
        with self._lock:
            self._problems.append(problem)
            for pos, note in notes.items():
                self._notes.setdefault(pos, []).append(note)

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    def notes(self, pos: int) -> list[str]:
        with self._lock:
            return list(self._notes.get(pos, ()))


@dataclass(frozen=True, eq=False)
class FolderIndex:
    """An opened output folder, shared by every session: nothing in it changes after `load_folder` except
    `findings`, which is thread-safe."""

    root: Path
    layout: Layout
    manifest: dict
    images: list[str]  # "val_XXXX" per position
    models: list[str]
    classes: ClassTable
    available: dict[str, np.ndarray]  # source -> (images,) bool: its PNG and annotation JSON are both there
    instance_counts: dict[str, np.ndarray]  # source -> (images, classes) instances per class (stuff counts 1)
    stats: pd.DataFrame  # segment_stats.csv rows sorted by position, with a "pos" column
    stats_offsets: np.ndarray  # rows of image p: stats[offsets[p]:offsets[p + 1]]
    covered: dict[str, np.ndarray]  # model -> (images,) bool: segment_stats.csv holds this pair's counts
    image_metrics: dict[str, pd.DataFrame]  # model -> per position: pq sq rq (NaN = undefined) tp fp fn classes
    analysis: pd.DataFrame  # analysis_stats.csv rows sorted by position, with a "pos" column (empty without it)
    analysis_offsets: np.ndarray  # rows of image p: analysis[offsets[p]:offsets[p + 1]]
    analysis_covered: dict[str, np.ndarray]  # model -> (images,) bool: analysis_stats.csv holds this pair
    sweep: dict  # sweep.json's "models": model -> its threshold sweep ({} without one)
    model_tasks: dict[str, str]  # model -> the task it ran (panoptic, semantic, instance)
    truth: dict[str, np.ndarray]  # task -> (images,) bool: the image has ground truth of that task
    semantic_stats: pd.DataFrame  # semantic_stats.csv rows sorted by position, with a "pos" column
    instance_stats: pd.DataFrame  # instance_stats.csv rows sorted by position, with a "pos" column
    task_metrics: dict  # task_metrics.json's "models" ({} without it)
    opening_problems: list[str]
    opening_notes: dict[int, list[str]]  # position -> what is missing for that image
    names: dict[str, int]  # the image's index, "val_XXXX" name, key and stem -> position
    findings: Findings = field(default_factory=Findings)

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def problems(self) -> list[str]:
        """Everything found missing or broken, at opening and since."""
        return self.opening_problems + self.findings.problems()

    def image_notes(self, pos: int) -> list[str]:
        return self.opening_notes.get(pos, []) + self.findings.notes(pos)

    def has(self, source: str, pos: int) -> bool:
        return source in self.available and bool(self.available[source][pos])

    def segments(self, source: str, pos: int) -> list[dict]:
        """segments_info of one image for GT or a model, from its annotation JSON; FolderError naming the file
        when it is missing or unusable."""
        if not self.has(source, pos):
            raise FolderError(f"{source_label(source)}: no {'ground truth' if source == GT else 'prediction'} "
                              f"for {self.images[pos]}")
        return read_segments(self.layout.annotation_json(self.images[pos], source))

    def position(self, text: str | int | None) -> int | None:
        """The position of an image named by its index, "val_XXXX" name, key or stem; None if there is none."""
        return None if text is None else self.names.get(str(text).strip())

    @property
    def has_analysis(self) -> bool:
        """Whether the folder's analysis_stats.csv covers every pair segment_stats.csv does."""
        return all(bool((self.analysis_covered[m] | ~self.covered[m]).all()) for m in self.models)

    def reindex_command(self) -> str:
        return REINDEX.format(root=self.root)

    @property
    def panoptic_models(self) -> list[str]:
        return [m for m in self.models if self.model_tasks[m] == "panoptic"]

    def scored_tasks(self, model: str) -> set[str]:
        """The tasks a model's prediction is scored on (a panoptic one: all three)."""
        return task_stats.scored_tasks(self.model_tasks[model])

    def stored_analysis(self, pos: int, model: str) -> AnalysisCounts | None:
        """This pair's analysis counts as analysis_stats.csv holds them; None when the file does not cover it."""
        if not self.analysis_covered[model][pos]:
            return None
        rows = self.analysis.iloc[self.analysis_offsets[pos]:self.analysis_offsets[pos + 1]]
        rows = rows[rows["model"] == model]
        return AnalysisCounts.from_rows({int(k): row for k, row in
                                         rows.set_index("category_id")[list(ANALYSIS_COLUMNS)].iterrows()})

    def stored_counts(self, pos: int, model: str) -> dict[int, pq.CategoryCounts] | None:
        """This pair's counts as segment_stats.csv holds them; None when the file does not cover the pair."""
        if not self.covered[model][pos]:
            return None
        rows = self.stats.iloc[self.stats_offsets[pos]:self.stats_offsets[pos + 1]]
        rows = rows[rows["model"] == model]
        return {int(r.category_id): pq.CategoryCounts(int(r.tp), int(r.fp), int(r.fn), float(r.iou_sum),
                                                      int(r.gt_segments), int(r.pred_segments))
                for r in rows.itertuples(index=False)}


def read_segments(path: Path) -> list[dict]:
    """The segments_info of a per-image annotation JSON, checked; cached by file (size, modification time)."""
    try:
        stat = os.stat(path)
    except OSError:
        raise FolderError(f"{path}: missing") from None
    return _read_segments(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=512)
def _read_segments(path: str, size: int, mtime_ns: int) -> list[dict]:
    annotation = read_json_file(Path(path))
    segments = annotation.get("segments_info") if isinstance(annotation, dict) else None
    if not isinstance(segments, list) or not all(
            isinstance(s, dict) and isinstance(s.get("id"), int) and isinstance(s.get("category_id"), int)
            for s in segments):
        raise FolderError(f"{path}: not a COCO panoptic annotation (segments_info with id and category_id)")
    return segments


def _listing(directory: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(directory)}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


class _Report:
    """What opening found missing or broken: folder-wide problems and notes per image position."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: dict[int, list[str]] = {}

    def note(self, pos: int, text: str) -> None:
        self.notes.setdefault(pos, []).append(text)


def _availability(layout: Layout, source: str, images: list[str], report: _Report) -> np.ndarray:
    """Which images have both the PNG and the annotation of `source`, from one directory listing."""
    label = source_label(source)
    on_disk = _listing(layout.panoptic_dir(source))
    available = np.zeros(len(images), dtype=bool)
    missing, no_png = [], []
    for pos, image in enumerate(images):
        if f"{image}.json" not in on_disk:
            missing.append(image)
            report.note(pos, f"{label}: no {'ground truth' if source == GT else 'prediction'}")
        elif f"{image}.png" not in on_disk:
            no_png.append(image)
            report.note(pos, f"{label}: {image}.png missing")
        else:
            available[pos] = True
    if missing:
        what = "without ground truth" if source == GT else f"without a prediction of {source}"
        report.problems.append(f"{len(missing)} of {len(images)} images {what}: {_names(missing)}")
    if no_png:
        report.problems.append(f"{label}: PNG missing beside the annotation for {len(no_png)} images: "
                               f"{_names(no_png)}")
    return available


def _task_availability(layout: Layout, task: str, source: str, images: list[str], report: _Report,
                       expected: bool) -> np.ndarray:
    """Which images have `source`'s files of a semantic or instance task (GT, or a model of that task: its
    record JSON, and a semantic model its PNG); missing ones are reported when `expected`."""
    on_disk = _listing(layout.task_dir(task, source))
    if source == GT and task == "semantic":
        available = np.array([f"{image}.png" in on_disk for image in images], dtype=bool)
    else:
        needs_png = task == "semantic"
        available = np.array([f"{image}.json" in on_disk and (not needs_png or f"{image}.png" in on_disk)
                              for image in images], dtype=bool)
    missing = [image for image, ok in zip(images, available, strict=True) if not ok]
    if missing and expected:
        label = f"{task} ground truth" if source == GT else f"a prediction of {source} ({task})"
        report.problems.append(f"{len(missing)} of {len(images)} images without {label}: {_names(missing)}")
        for pos in np.flatnonzero(~available).tolist():
            report.note(pos, f"{source_label(source)}: no {task} {'ground truth' if source == GT else 'prediction'}")
    return available


def _read_table(layout: Layout, name: str, columns: tuple[str, ...], dtypes: dict, images: list[str],
                models: list[str], report: _Report, missing: str, added: tuple[str, ...] = ()) -> pd.DataFrame:
    """A per-(image, model, category) CSV of the folder, rows sorted by image position (a "pos" column); empty,
    with a line in the report, when it is missing or unreadable. `added`: the last columns, which a file
    written before they existed lacks (they are then NaN)."""
    path = layout.file(name)
    empty = pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in columns}).assign(pos=pd.Series(dtype="int64"))
    if not path.exists():
        report.problems.append(f"{name} missing: {missing}")
        return empty
    try:
        table = pd.read_csv(path, dtype=dtypes)
        if added and list(table.columns) == list(columns[:-len(added)]):
            table = table.assign(**{c: np.nan for c in added})
        if list(table.columns) != list(columns):
            raise ValueError(f"columns {list(table.columns)}, expected {list(columns)}")
    except (ValueError, OSError, pd.errors.ParserError) as e:
        report.problems.append(f"{path}: not readable ({e}); {missing}")
        return empty
    table["pos"] = table["image"].map(pd.Series(np.arange(len(images)), index=images))
    unknown = table["pos"].isna() | ~table["model"].isin(models)
    if unknown.any():
        report.problems.append(f"{name}: {int(unknown.sum())} rows name images or models the manifest does not "
                               "list; ignored")
        table = table[~unknown]
    table = table.astype({"pos": "int64"})
    # Stable sort keeps the file's category order inside each (image, model): the order pq_summary averages in.
    return table.sort_values("pos", kind="stable").reset_index(drop=True)


STATS_DTYPES = {"image": str, "model": str, "category_id": "int64", "tp": "int64", "fp": "int64", "fn": "int64",
                "iou_sum": "float64", "gt_segments": "int64", "pred_segments": "int64"}
ANALYSIS_DTYPES = {"image": str, "model": str, "category_id": "int64",
                   **{c: "float64" if c in FLOAT_COLUMNS else "int64" for c in ANALYSIS_COLUMNS}}


def _read_stats(layout: Layout, images: list[str], models: list[str], report: _Report) -> pd.DataFrame:
    return _read_table(layout, SEGMENT_STATS, SEGMENT_STATS_COLUMNS, STATS_DTYPES, images, models, report,
                       "no metrics for filters and rankings (metrics of the image on screen are computed from its "
                       "PNGs); rebuild it with the dump's --reindex")


def _read_analysis(layout: Layout, images: list[str], models: list[str], report: _Report) -> pd.DataFrame:
    if not layout.file(ANALYSIS_STATS).exists() and not layout.file(SEGMENT_STATS).exists():
        return _read_table(layout, ANALYSIS_STATS, ANALYSIS_STATS_COLUMNS, ANALYSIS_DTYPES, images, models,
                           _Report(), "")  # segment_stats.csv's line says it all
    return _read_table(layout, ANALYSIS_STATS, ANALYSIS_STATS_COLUMNS, ANALYSIS_DTYPES, images, models, report,
                       "no error analysis, Boundary PQ or PQ by size over the images (the image on screen gets "
                       f"them from its PNGs); add them with `{REINDEX.format(root=layout.root)}`")


def _analysis_covered(analysis: pd.DataFrame, stats: pd.DataFrame, covered: dict[str, np.ndarray],
                      report: _Report, n_images: int) -> dict[str, np.ndarray]:
    """Pairs whose analysis rows are there: any row, or nothing to analyse (no TP, FP or FN in the stats)."""
    result = {}
    active = stats[(stats["tp"] + stats["fp"] + stats["fn"]) > 0]
    for model, is_covered in covered.items():
        has_rows = np.zeros(n_images, dtype=bool)
        has_rows[analysis.loc[analysis["model"] == model, "pos"].to_numpy()] = True
        needs_rows = np.zeros(n_images, dtype=bool)
        needs_rows[active.loc[active["model"] == model, "pos"].to_numpy()] = True
        result[model] = is_covered & (has_rows | ~needs_rows)
        stale = int((is_covered & needs_rows & ~has_rows).sum())
        if stale and len(analysis):
            report.problems.append(f"{ANALYSIS_STATS} lacks {stale} images of {model} (older than the "
                                   "predictions?); rebuild it with the dump's --reindex")
    return result


SEMANTIC_DTYPES = {"image": str, "model": str, "source_task": str, "category_id": "int64", "intersection": "int64",
                   "union": "int64", "gt_pixels": "int64", "pred_pixels": "int64"}
INSTANCE_DTYPES = {"image": str, "model": str, "source_task": str, "category_id": "int64",
                   **{c: "float64" if c in INSTANCE_AP_COLUMNS else "int64" for c in INSTANCE_STATS_COLUMNS[4:]}}


def _read_task_tables(layout: Layout, images: list[str], models: list[str], wanted: set[str],
                      report: _Report) -> tuple[pd.DataFrame, pd.DataFrame]:
    """semantic_stats.csv and instance_stats.csv; a missing one is a problem only where the folder has that
    task's ground truth (a folder written before tasks existed has neither)."""
    tables = []
    for task, name, columns, dtypes, added in (
            ("semantic", SEMANTIC_STATS, SEMANTIC_STATS_COLUMNS, SEMANTIC_DTYPES, ()),
            ("instance", INSTANCE_STATS, INSTANCE_STATS_COLUMNS, INSTANCE_DTYPES, INSTANCE_AP_COLUMNS)):
        quiet = task not in wanted and not layout.file(name).exists()
        tables.append(_read_table(layout, name, columns, dtypes, images, models, _Report() if quiet else report,
                                  f"no {task} metrics per image (rebuild it with the dump's --reindex)", added))
    return tables[0], tables[1]


def _read_task_metrics(layout: Layout, report: _Report) -> dict:
    path = layout.file(TASK_METRICS)
    if not path.exists():
        return {}
    try:
        models = read_json_file(path)["models"]
        if not isinstance(models, dict):
            raise TypeError("'models' is not an object")
        return models
    except (FolderError, KeyError, TypeError) as e:
        report.problems.append(f"{path}: not usable ({e}); dataset-level mIoU and AP are not shown")
        return {}


def _read_sweep(layout: Layout, models: list[str], report: _Report) -> dict:
    """sweep.json's models (those the manifest lists); {} when there is none."""
    path = layout.file(SWEEP)
    if not path.exists():
        return {}
    try:
        sweep = read_json_file(path)["models"]
        _ = [(float(row["score"]), float(row["overlap"]), row["All"]["pq"]) for entry in sweep.values()
             for row in entry["results"]]  # the fields the page reads are there
    except (FolderError, KeyError, TypeError, ValueError, AttributeError) as e:
        report.problems.append(f"{path}: not a threshold sweep ({e!r}); ignored")
        return {}
    return {model: entry for model, entry in sweep.items() if model in models}


def per_image_metrics(stats: pd.DataFrame, n_images: int, model: str) -> pd.DataFrame:
    """PQ/SQ/RQ per image as panopticapi defines them: the mean over that image's active classes (never pooled
    counts), NaN where no class is active; plus TP/FP/FN summed over classes and the number of active classes."""
    rows = stats[stats["model"] == model]
    rows = rows[(rows["tp"] + rows["fp"] + rows["fn"]) > 0]
    pq_value, sq_value, rq_value = pq.quality(rows["tp"], rows["fp"], rows["fn"], rows["iou_sum"])
    per_class = pd.DataFrame({"pos": rows["pos"], "pq": pq_value, "sq": sq_value, "rq": rq_value,
                              "tp": rows["tp"], "fp": rows["fp"], "fn": rows["fn"], "classes": 1})
    sums = per_class.groupby("pos")[["pq", "sq", "rq", "tp", "fp", "fn", "classes"]].sum()
    for metric in METRICS:
        sums[metric] = sums[metric] / sums["classes"]
    table = sums.reindex(np.arange(n_images))
    table[["tp", "fp", "fn", "classes"]] = table[["tp", "fp", "fn", "classes"]].fillna(0).astype(np.int64)
    return table[["pq", "sq", "rq", "tp", "fp", "fn", "classes"]]


def _counts_from_stats(stats: pd.DataFrame, column_of: np.ndarray, n_images: int, n_classes: int,
                       count: str, rows: np.ndarray) -> np.ndarray:
    matrix = np.zeros((n_images, n_classes), dtype=np.int32)
    chosen = stats[rows]
    columns = column_of[chosen["category_id"].to_numpy()]
    known = columns >= 0
    # Every model's rows of an image carry the same gt_segments: assignment, not addition.
    matrix[chosen["pos"].to_numpy()[known], columns[known]] = chosen[count].to_numpy()[known]
    return matrix


@dataclass
class _Counts:
    """Instances per class and image of every source, and which (image, model) pairs the stats cover."""

    instances: dict[str, np.ndarray]
    in_file: dict[str, np.ndarray]
    covered: dict[str, np.ndarray]


def _instance_counts(stats: pd.DataFrame, classes: ClassTable, unknown: list[int], n_images: int,
                     models: list[str], available: dict[str, np.ndarray]) -> _Counts:
    column_of = np.full(max([*classes.names, *unknown], default=0) + 1, -1, dtype=np.int64)
    for class_id, col in classes.column.items():
        column_of[class_id] = col
    in_file = {}
    for model in models:
        in_file[model] = np.zeros(n_images, dtype=bool)
        in_file[model][stats.loc[stats["model"] == model, "pos"].to_numpy()] = True
    instances = {GT: _counts_from_stats(stats, column_of, n_images, len(classes), "gt_segments",
                                        np.ones(len(stats), dtype=bool))}
    for model in models:
        instances[model] = _counts_from_stats(stats, column_of, n_images, len(classes), "pred_segments",
                                              (stats["model"] == model).to_numpy())
    covered = {model: available[GT] & available[model] & in_file[model] for model in models}
    return _Counts(instances, in_file, covered)


def _count_from_annotations(layout: Layout, images: list[str], models: list[str], classes: ClassTable,
                            available: dict[str, np.ndarray], counts: _Counts, has_stats: bool,
                            report: _Report) -> None:
    """Pairs segment_stats.csv has no row for: nothing to count (no segment on either side), or a file older
    than the predictions. Their annotations are read to tell, and to count their instances."""
    broken: dict[str, list[str]] = {}

    def count_from_json(source: str, pos: int) -> int | None:
        try:
            segments = [s for s in read_segments(layout.annotation_json(images[pos], source))
                        if not s.get("iscrowd", 0)]
        except FolderError as e:
            broken.setdefault(source, []).append(images[pos])
            report.note(pos, f"{source_label(source)}: {e}")
            available[source][pos] = False
            return None
        for s in segments:
            if s["category_id"] in classes.column:
                counts.instances[source][pos, classes.column[s["category_id"]]] += 1
        return len(segments)

    gt_counted = np.zeros(len(images), dtype=bool)
    for model in models:
        gt_counted |= counts.in_file[model]
    for pos in np.flatnonzero(available[GT] & ~gt_counted).tolist():
        count_from_json(GT, pos)
    for model in models:
        stale = []
        for pos in np.flatnonzero(available[model] & ~counts.in_file[model]).tolist():
            n_pred = count_from_json(model, pos)
            if n_pred is not None and available[GT][pos]:
                if n_pred == 0 and counts.instances[GT][pos].sum() == 0:
                    counts.covered[model][pos] = True  # no segment on either side: nothing to count
                elif has_stats:
                    stale.append(images[pos])
        if stale:
            report.problems.append(f"{SEGMENT_STATS} lacks {len(stale)} images of {model} (older than the "
                                   f"predictions?): {_names(stale)}; their metrics are computed when shown")
    for source, names in broken.items():
        report.problems.append(f"{source_label(source)}: unreadable annotation JSON for {len(names)} images: "
                               f"{_names(names)}")


def _read_manifest_entries(root: Path, report: _Report) -> tuple[dict, list[dict], ClassTable, list[str]]:
    """The manifest's images, classes and models that can be used. The manifest comes from whoever wrote the
    folder: a model name such as ../../x would make the app read files outside it, and a class id of 10**10
    would make its colour table exhaust memory, so every entry is checked and what is refused is listed."""
    manifest = read_manifest(root)
    if not all(isinstance(manifest[key], list) for key in ("images", "models", "classes")):
        raise FolderError(f"{root / MANIFEST}: images, models and classes must be lists")
    entries = _checked(manifest["images"], _image_entry, "image", report)
    classes = ClassTable(tuple(_checked(manifest["classes"], _class_entry, "class", report)))
    models = _checked(manifest["models"], _model_entry, "model", report)
    return ({**manifest, "images": sorted(entries, key=lambda e: e["index"]), "models": models},
            sorted(entries, key=lambda e: e["index"]), classes, [m["name"] for m in models])


def _checked(entries: list, check, what: str, report: _Report) -> list:
    """The entries `check` accepts (it returns the entry or its parsed form, and raises ValueError naming the
    problem), without a second entry of the same key; the others become one problem line each."""
    kept, keys = [], set()
    for entry in entries:
        try:
            value, key = check(entry)
            if key in keys:
                raise ValueError(f"a second entry for {key!r}")
        except (ValueError, TypeError, KeyError) as e:
            report.problems.append(f"{MANIFEST}: {what} entry refused ({e}): {str(entry)[:120]}")
            continue
        keys.add(key)
        kept.append(value)
    return kept


def _image_entry(entry: dict) -> tuple[dict, int]:
    index = entry["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_IMAGES:
        raise ValueError(f"index must be an integer in 0..{MAX_IMAGES - 1}")
    return entry, index


def _class_entry(entry: dict) -> tuple[ClassInfo, int]:
    (info,) = ClassTable.from_entries([entry]).classes
    return info, info.id


def _model_entry(entry: dict) -> tuple[dict, str]:
    name = check_model_name(entry["name"])
    if model_task(entry) not in task_stats.METRIC_TASK.values():
        raise ValueError(f"unknown task {model_task(entry)!r}")
    return entry, name_key(name)


def _availabilities(layout: Layout, images: list[str], tasks: dict[str, str], truths: tuple[str, ...],
                    report: _Report) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per source, the images it has (a model: the files of its own task), and per task the images with ground
    truth of it (panoptic: available[GT])."""
    n = len(images)
    available = {GT: _availability(layout, GT, images, report) if "panoptic" in truths else np.zeros(n, bool)}
    truth = {"panoptic": available[GT]}
    for task in ("semantic", "instance"):
        truth[task] = _task_availability(layout, task, GT, images, report, task in truths)
    for model, task in tasks.items():
        available[model] = _availability(layout, model, images, report) if task == "panoptic" else \
            _task_availability(layout, task, model, images, report, True)
    if not any(t.any() for t in truth.values()):
        report.problems.append("no ground truth at all: predictions are shown, metrics and error maps are not")
    return available, truth


def _task_counts(classes: ClassTable, n_images: int, tasks: dict[str, str], semantic: pd.DataFrame,
                 instance: pd.DataFrame, instances: dict[str, np.ndarray]) -> None:
    """Class filters on every task: a semantic model's classes are those it predicts on labelled pixels (what
    semantic_stats.csv counts), an instance model's its thing instances scored from PRESENCE_SCORE; the ground
    truth holds a class when any task's does."""
    truth = [task_stats.presence(semantic, "gt_pixels", classes, n_images, None, cap=1),
             task_stats.presence(instance, "gt_instances", classes, n_images, None)]
    instances[GT] = np.maximum.reduce([instances[GT], *truth])
    for model, task in tasks.items():
        if task == "semantic":
            instances[model] = task_stats.presence(semantic, "pred_pixels", classes, n_images, model, cap=1)
        elif task == "instance":
            instances[model] = task_stats.presence(instance, "pred_instances", classes, n_images, model)


def _image_metrics(stats: pd.DataFrame, semantic: pd.DataFrame, instance: pd.DataFrame, n_images: int,
                   model: str, covered: np.ndarray) -> pd.DataFrame:
    """Per position: PQ/SQ/RQ with TP/FP/FN (panoptic), mIoU (semantic) and TP/FP/FN with recall at IoU 0.5 and
    0.75 (instance), NaN where the model has no such number for the image."""
    panoptic = per_image_metrics(stats, n_images, model)
    panoptic.loc[~covered, ["pq", "sq", "rq"]] = np.nan
    return pd.concat([panoptic, task_stats.per_image_semantic(semantic, n_images, model),
                      task_stats.per_image_instance(instance, n_images, model)], axis=1)


def _image_names(entries: list[dict], images: list[str]) -> dict[str, int]:
    names: dict[str, int] = {}
    for pos, entry in enumerate(entries):
        for name in (images[pos], str(entry["index"]), entry.get("key"), entry.get("stem")):
            if name is not None:
                names.setdefault(str(name), pos)
    return names


def _failures(layout: Layout, report: _Report) -> None:
    try:
        failures = read_failures(layout)
    except FolderError as e:
        failures = []
        report.problems.append(str(e))
    for failure in failures:
        report.problems.append(f"the dump failed on {failure.get('image', '?')} ({failure.get('stage', '?')}): "
                               f"{failure.get('reason', '')}")


def load_folder(root: str | Path) -> FolderIndex:
    """Opens an output folder. Raises FolderError only when the manifest itself is unusable; every other missing
    or broken file becomes a line of `problems` (and of `image_notes` for the images it concerns)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    report = _Report()
    manifest, entries, classes, models = _read_manifest_entries(root, report)
    layout = Layout(root, len(entries))
    images = [layout.image_name(int(e["index"])) for e in entries]

    tasks = {m["name"]: model_task(m) for m in manifest["models"]}
    panoptic = [m for m in models if tasks[m] == "panoptic"]
    truths = ground_truth_tasks(manifest)
    available, truth = _availabilities(layout, images, tasks, truths, report)
    stats = _read_stats(layout, images, models, report) if panoptic or "panoptic" in truths else \
        _read_table(layout, SEGMENT_STATS, SEGMENT_STATS_COLUMNS, STATS_DTYPES, images, models, _Report(), "")
    unknown = sorted(set(stats["category_id"].unique().tolist()) - set(classes.names))
    if unknown:
        report.problems.append(f"{SEGMENT_STATS}: category ids not in the manifest's class table: {unknown[:10]}")
    counts = _instance_counts(stats, classes, unknown, len(images), panoptic, available)
    _count_from_annotations(layout, images, panoptic, classes, available, counts, bool(len(stats)), report)
    semantic, instance = _read_task_tables(layout, images, models, set(truths) - {"panoptic"}, report)
    _task_counts(classes, len(images), tasks, semantic, instance, counts.instances)
    # As in instance_counts.json: an image has one "sky", however many pieces a prediction splits it into.
    stuff = np.array([not c.isthing for c in classes], dtype=bool)
    for matrix in counts.instances.values():
        matrix[:, stuff] = np.minimum(matrix[:, stuff], 1)
    covered = {m: counts.covered.get(m, np.zeros(len(images), bool)) for m in models}

    image_metrics = {model: _image_metrics(stats, semantic, instance, len(images), model, covered[model])
                     for model in models}
    analysis = _read_analysis(layout, images, panoptic, report) if panoptic else \
        _read_table(layout, ANALYSIS_STATS, ANALYSIS_STATS_COLUMNS, ANALYSIS_DTYPES, images, models, _Report(), "")
    analysis_covered = _analysis_covered(analysis, stats, covered, report, len(images))
    sweep = _read_sweep(layout, models, report)
    task_metrics = _read_task_metrics(layout, report)
    _failures(layout, report)
    return FolderIndex(root=root, layout=layout, manifest=manifest, images=images, models=models, classes=classes,
                       available=available, instance_counts=counts.instances, stats=stats,
                       stats_offsets=_offsets(stats, len(images)), covered=covered,
                       image_metrics=image_metrics, analysis=analysis,
                       analysis_offsets=_offsets(analysis, len(images)), analysis_covered=analysis_covered,
                       sweep=sweep, model_tasks=tasks, truth=truth, semantic_stats=semantic,
                       instance_stats=instance, task_metrics=task_metrics, opening_problems=report.problems,
                       opening_notes=report.notes, names=_image_names(entries, images))


def _offsets(table: pd.DataFrame, n_images: int) -> np.ndarray:
    return np.searchsorted(table["pos"].to_numpy(), np.arange(n_images + 1))


def check_annotations(folder: FolderIndex) -> int:
    """Reads every per-image annotation JSON and adds the unreadable ones to the folder's findings.

    Opening does not wait for this (seconds on 2,000 images x 4 models): the app runs it in a background thread,
    and the pages show what it found when they load. Returns how many files were unreadable."""
    unreadable = 0
    for source in [GT, *folder.panoptic_models]:  # the panoptic annotations; the other tasks' are read when shown
        available = folder.available[source]
        bad, notes = [], {}
        for pos in np.flatnonzero(available).tolist():
            path = folder.layout.annotation_json(folder.images[pos], source)
            try:
                _read_segments.__wrapped__(str(path), 0, 0)  # uncached: a sweep must not evict what is shown
            except FolderError as e:
                bad.append(folder.images[pos])
                notes[pos] = f"{source_label(source)}: {e}"
        if bad:
            unreadable += len(bad)
            folder.findings.add(f"{source_label(source)}: unreadable annotation JSON for {len(bad)} images: "
                                f"{_names(bad)}", notes)
    return unreadable


def summary_markdown(folder: FolderIndex) -> str:
    """One line on what the folder holds, then every problem found while opening it."""
    head = (f"**{text(folder.root)}**: {folder.n_images} images, {len(folder.models)} models "
            f"({', '.join(map(text, folder.models)) or 'none'}), {len(folder.classes)} classes")
    problems = folder.problems
    if not problems:
        return head + " · nothing missing"
    lines = "\n".join(f"- {text(p)}" for p in problems)
    return f"{head} · **{len(problems)} problem(s)**:\n\n{lines}"
