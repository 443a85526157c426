"""One dump: several models over a dataset into one output folder (the library behind predict_dump.py).

    from dump.run import DumpOptions, dump
    status = dump(DumpOptions(out="runs/x", data="~/ade", models=(ModelSpec("L640", "tue-mps/..."),)))

`dump` checks the folder may be written for this data and these models, writes the manifest, then the data files
(inputs, ground truth) and each model's predictions (the passes), and finally the aggregate files and a summary.
Exit status: 0 when every image of every model is done, 3 when some images failed, 1 when the run was refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dump.aggregates import aggregates_current, build_aggregates
from dump.folder import (
    AGGREGATE_FILES,
    CLASS_NAMES,
    FAILURES,
    INSTANCE_COUNTS,
    MANIFEST,
    TASK_FOLDERS,
    TASK_METRICS,
    TASKS,
    Layout,
    check_model_name,
    model_task,
    name_key,
    new_manifest,
    read_failures,
    read_manifest,
    write_class_names,
    write_failures,
    write_manifest,
)
from dump.model_specs import ModelSpec, check_unique
from dump.sweep import SweepGrid
from dump.writer import Writing, data_done, prediction_done
from eomt import atomic
from eomt.classes import ClassTable

EXIT_REFUSED = 1
EXIT_SOME_FAILED = 3
_ADDRESS = re.compile(r"<([^<>]*?) at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class DumpOptions:
    """What predict_dump.py's command line asks for (see its --help)."""

    out: Path
    data: Path
    models: tuple[ModelSpec, ...]
    split: str = "validation"
    limit: int | None = None
    device: str = "auto"
    dtype: str = "fp32"
    batch_size: int = 1
    workers: int = 2
    overwrite: bool = False
    skip_constant: bool = False
    sweep: SweepGrid | None = None  # --sweep: post-processing settings to count PQ for (dump.sweep)
    backbone: str | None = None  # --backbone-weights without a name: for every model that needs one
    dataset: str | None = None  # --dataset: ade20k, coco or cityscapes (default: what the files show)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "models", tuple(check_unique(list(self.models))))


@dataclass
class _Run:
    """What one run works on, once its models and data are open."""

    options: DumpOptions
    layout: Layout
    dataset: object  # a segdata reader
    indices: list[int]
    classes: ClassTable
    models: dict  # name -> LoadedModel
    device: str
    ranks: object  # eomt.devices.Ranks
    failures: list[dict] = field(default_factory=list)

    @property
    def with_ground_truth(self) -> bool:
        return self.dataset.has_ground_truth

    @property
    def ground_truth(self) -> tuple[str, ...]:
        return ground_truth_tasks(self.dataset)

    def writing(self) -> Writing:
        """What writing the files of an image needs to know of this run."""
        return Writing(self.layout, self.classes.palette, self.ground_truth, len(self.classes),
                       dict(zip((c.id for c in self.classes), category_id_list(self.dataset, self.classes),
                                strict=True)),
                       tuple(self.dataset.image_ids), tuple(self.dataset.keys),
                       frozenset(c.id for c in self.classes if c.isthing))

    def failed(self, stage: str):
        """A reporter of failures at one stage ("data" or a model name): console and failures.json."""
        def record(index: int, reason: str) -> None:
            # Object reprs carry memory addresses, which would make failures.json differ on every rerun.
            reason = _ADDRESS.sub(r"<\1>", reason)
            image = self.layout.image_name(index)
            self.failures.append({"image": image, "index": index, "stage": stage, "reason": reason})
            print(f"\n{image} ({self.dataset.keys[index]}), {stage}: {reason}", file=sys.stderr)
        return record


DATA_SUFFIXES = (".zip", ".jpg", ".jpeg", ".png", ".json", ".bmp", ".webp", ".tif", ".tiff")


def data_fingerprint(root: Path, skip: Path | None = None) -> str:
    """A hash of the names and sizes of the data files under `root` (`skip`: the output folder, when it lies
    inside). Other data put at the same path changes it, so a rerun does not mix two datasets in one folder."""
    digest = hashlib.sha256()
    for folder, subfolders, files in sorted(os.walk(root)):
        if skip is not None and Path(folder).resolve().is_relative_to(skip):
            subfolders.clear()
            continue
        subfolders.sort()
        for name in sorted(files):
            if name.lower().endswith(DATA_SUFFIXES):
                path = Path(folder) / name
                digest.update(f"{path.relative_to(root)}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LoadedModel:
    model: object  # an eomt.EoMT or eomt.onnx.OnnxModel
    task: str
    backbone: str | None  # the backbone source it was loaded with


def ground_truth_tasks(dataset) -> tuple[str, ...]:
    """The tasks the data gives ground truth of: its own, and from a panoptic one the semantic (class map) and
    instance (thing segments) ground truths too."""
    tasks = set(dataset.tasks) | ({"semantic", "instance"} if "panoptic" in dataset.tasks else set())
    return tuple(t for t in TASKS if t in tasks)


def category_id_list(dataset, classes: ClassTable) -> list[int]:
    """Per class (table order): its category id in the COCO instance files, the dataset's own where it has them
    (COCO), else the class id."""
    return [int(getattr(c, "coco_id", c.id)) for c in (dataset.classes if dataset.has_ground_truth else classes)]


def dataset_identity(dataset, options: DumpOptions) -> dict:
    """What the manifest records of the data, and what a rerun must match to resume into the same folder."""
    root = str(options.data.resolve())
    fingerprint = data_fingerprint(options.data, options.out.resolve())
    if dataset.name == "ade20k":
        return {"kind": "ade20k", "root": root, "split": options.split, "skip_constant": options.skip_constant,
                "has_ground_truth": True, "fingerprint": fingerprint}
    if dataset.has_ground_truth:
        return {"kind": dataset.name, "root": root, "split": dataset.split, "tasks": sorted(dataset.tasks),
                "has_ground_truth": True, "fingerprint": fingerprint}
    return {"kind": "images", "root": root, "has_ground_truth": False, "fingerprint": fingerprint}


def dump(options: DumpOptions) -> int:
    """Runs the dump (torchrun: this process's share of it) and returns the exit status."""
    from eomt.devices import check_precision, init_ranks, resolve_device

    ranks = init_ranks(options.device)
    try:
        device = resolve_device(options.device, ranks.local_rank)
        check_precision(options.dtype, device)
        run = _open(options, device, ranks)
        failure = None
        if ranks.is_main:
            try:
                prepare_folder(run)
            except ValueError as e:
                failure = str(e)
        failure = ranks.broadcast(failure)
        if failure:
            raise ValueError(failure)
        return _passes(run)
    finally:
        ranks.close()


def _open(options: DumpOptions, device: str, ranks) -> _Run:
    """Opens the data and loads every model; ValueError when either cannot be used."""
    from segdata.detect import open_dataset

    dataset = open_dataset(options.data, options.split, options.skip_constant, options.dataset)
    indices = list(range(len(dataset)))[: options.limit]
    if not indices:
        raise ValueError(f"--data {options.data}: the {options.split} split has no images")
    models = load_models(options, device)
    classes = class_table(dataset, models)
    return _Run(options, Layout(options.out, len(indices)), dataset, indices, classes, models, device, ranks)


def load_models(options: DumpOptions, device: str) -> dict[str, LoadedModel]:
    """Every model with its task and backbone; each distinct backbone is read once. ValueError naming the model
    that does not load."""
    import eomt

    backbones: dict[str, dict] = {}

    def load(spec: ModelSpec, backbone: str | None):
        if backbone is not None and backbone not in backbones:
            backbones[backbone] = eomt.read_backbone(backbone)
        return eomt.load_model(spec.source, preset=spec.preset, device=device,
                               backbone_weights=None if backbone is None else backbones[backbone])

    models = {}
    for spec in options.models:
        backbone = spec.backbone
        try:
            try:
                model = load(spec, backbone)
            except eomt.CheckpointError as first:
                if backbone is not None or options.backbone is None:
                    raise
                backbone = options.backbone  # the default backbone, for a model that needs one
                try:
                    model = load(spec, backbone)
                except Exception as second:
                    raise ValueError(f"{first}; with --backbone-weights {backbone}: {second}") from None
        except Exception as e:
            raise ValueError(f"model {spec.name!r} ({spec.source}) does not load: {e}") from None
        models[spec.name] = LoadedModel(model, spec.task or model.config.task, backbone)
    return models


def _fits(model: LoadedModel, classes: ClassTable) -> bool:
    """A model's classes are the data's, or (an instance model) the data's thing classes, which come first."""
    n = model.model.config.num_classes
    things = [c.isthing for c in classes]
    return n == len(classes) or (model.task == "instance" and n == sum(things) and all(things[:n]))


def class_table(dataset, models: dict[str, LoadedModel]) -> ClassTable:
    """The data's classes (without ground truth: those of the model with the most classes), after checking that
    every model predicts them; ValueError otherwise."""
    if dataset.has_ground_truth:
        classes = ClassTable(tuple(dataset.classes))
    else:
        widest = max(models.values(), key=lambda m: m.model.config.num_classes)
        classes = widest.model.config.class_table()
    for name, model in models.items():
        if not _fits(model, classes):
            things = sum(c.isthing for c in classes)
            raise ValueError(f"model {name!r} ({model.task}) predicts {model.model.config.num_classes} classes, the "
                             f"data has {len(classes)} ({things} of them things): its predictions could not be "
                             "compared")
    return classes


def _check_existing(run: _Run, identity: dict) -> dict | None:
    """The manifest of an earlier run into this folder, after checking this run may continue it."""
    root, options = run.layout.root, run.options
    if not (root / MANIFEST).exists():
        if root.exists() and any(root.iterdir()) and not options.overwrite and (
                any(root.glob("val_*")) or (root / "panoptic").exists()):
            raise ValueError(f"{root} holds dump files but no manifest.json: pass --overwrite to start again")
        return None
    if options.overwrite:
        clear_folder(root)
        return None
    previous = read_manifest(root)
    old = previous["dataset"]
    # Folders written before fingerprints were recorded resume without that check (and get one now).
    checked = {k: v for k, v in identity.items() if k != "fingerprint" or k in old}
    if {k: old.get(k) for k in checked} != checked:
        if {k: old.get(k) for k in checked if k != "fingerprint"} == {k: v for k, v in checked.items()
                                                                     if k != "fingerprint"}:
            raise ValueError(f"{root} was written for the data at {identity['root']}, whose files have changed "
                             "since (other names or sizes): choose another --out or pass --overwrite")
        raise ValueError(f"{root} was written for other data ({old}), not {identity}: choose another --out or "
                         "pass --overwrite")
    old_n = len(previous["images"])
    if Layout(root, old_n).image_name(0) != run.layout.image_name(0):
        raise ValueError(f"{root} holds {old_n} images named with another number of digits than "
                         f"{len(run.indices)} images need: pass --overwrite or the same --limit")
    return previous


def _image_entries(run: _Run, previous: dict | None) -> list[dict]:
    old_images = {entry["index"]: entry for entry in (previous or {}).get("images", [])}
    images = []
    for index in run.indices:
        entry = {"index": index, "key": run.dataset.keys[index], "stem": run.dataset.stems[index],
                 "image_id": int(run.dataset.image_ids[index]), "width": None, "height": None}
        old = old_images.get(index)
        if old is not None:
            if old["key"] != entry["key"]:
                raise ValueError(f"{run.layout.root}: image {index} was {old['key']}, now {entry['key']}: the "
                                 "data changed; pass --overwrite")
            entry["width"], entry["height"] = old.get("width"), old.get("height")
        images.append(entry)
    return images


def _model_entries(run: _Run, previous: dict | None) -> list[dict]:
    old_models = {m["name"]: m for m in (previous or {}).get("models", [])}
    entries = []
    for spec in run.options.models:
        loaded = run.models[spec.name]
        entry = {"name": spec.name, "source": spec.source, "preset": spec.preset, "task": loaded.task,
                 "backbone_weights": loaded.backbone, "img_size": loaded.model.config.img_size,
                 "device": run.device, "dtype": run.options.dtype, "images_done": 0, "seconds_per_image": None}
        old = old_models.pop(spec.name, None)
        if old is not None:
            was = (old["source"], old.get("preset"), model_task(old), old.get("backbone_weights"))
            if was != (spec.source, spec.preset, loaded.task, loaded.backbone):
                raise ValueError(f"{run.layout.root}: model {spec.name!r} was written from {old['source']}"
                                 f"{'@' + old['preset'] if old.get('preset') else ''} ({model_task(old)}"
                                 f"{', backbone ' + old['backbone_weights'] if old.get('backbone_weights') else ''})"
                                 f"; now {spec.source} ({loaded.task}"
                                 f"{', backbone ' + loaded.backbone if loaded.backbone else ''}): use another name "
                                 "or --overwrite")
            entry["images_done"], entry["seconds_per_image"] = old["images_done"], old["seconds_per_image"]
        entries.append(entry)
    # Models of earlier runs that this run does not name stay in the folder and in the comparison.
    keys = {name_key(spec.name) for spec in run.options.models}
    for old in old_models.values():
        check_model_name(old["name"])
        if name_key(old["name"]) in keys:
            raise ValueError(f"{run.layout.root}: model {old['name']!r} is already in the folder, and its files "
                             "would be the new model's on a case-insensitive file system: use another name")
        entries.append(old)
    return entries


def prepare_folder(run: _Run) -> None:
    """Checks that --out may be written for this data (or empties it with --overwrite) and writes the manifest."""
    identity = dataset_identity(run.dataset, run.options)
    previous = _check_existing(run, identity)
    if run.layout.root.is_dir():  # what a killed writer left; no other rank writes before this one is done
        atomic.remove_temporaries(run.layout.root)
    dataset = {**identity, "ground_truth_tasks": list(run.ground_truth)}
    ids = category_id_list(run.dataset, run.classes)
    if ids != [c.id for c in run.classes]:
        dataset["category_ids"] = ids
    manifest = new_manifest(dataset, _image_entries(run, previous), _model_entries(run, previous),
                            run.classes.entries())
    if previous is not None:
        manifest = {**previous, **manifest}
    run.layout.root.mkdir(parents=True, exist_ok=True)
    write_manifest(run.layout, manifest)
    write_class_names(run.layout, run.classes)


def clear_folder(root: Path) -> None:
    """Deletes the files a dump writes (and nothing else) from `root`."""
    for name in (MANIFEST, CLASS_NAMES, FAILURES, *AGGREGATE_FILES):
        (root / name).unlink(missing_ok=True)
    for path in root.glob("val_*.png"):
        path.unlink()
    for name in TASK_FOLDERS:
        shutil.rmtree(root / name, ignore_errors=True)


def _passes(run: _Run) -> int:
    """The data pass, then one pass per model over this rank's images; the main rank finishes the folder."""
    import eomt
    from dump.passes import run_model, write_data_files

    layout, options, ranks = run.layout, run.options, run.ranks
    writing = run.writing()
    shard = ranks.shard(run.indices)
    todo = [i for i in shard if not data_done(layout, layout.image_name(i), run.ground_truth)]
    written = write_data_files(writing, run.dataset, todo, options.workers, run.failed("data"), ranks.is_main)
    ranks.barrier()

    readable = [i for i in shard if layout.input_png(layout.image_name(i)).exists()]
    timings, counts = {}, {}
    for spec in options.models:
        loaded = run.models[spec.name]
        predictor = eomt.Predictor(loaded.model, dtype=options.dtype)
        sweep = _sweep_grid(options.sweep, predictor) if run.with_ground_truth and loaded.task == "panoptic" \
            else None
        todo = [i for i in readable
                if not prediction_done(layout, layout.image_name(i), spec.name, sweep, loaded.task)]
        outcome = run_model(writing, run.dataset, todo, predictor, spec.name, options.batch_size, options.workers,
                            run.failed(spec.name), ranks.is_main, sweep, loaded.task)
        timings[spec.name] = (outcome.done, outcome.seconds)
        counts.update(outcome.counts)
        written += outcome.done
        del predictor
    ranks.barrier()

    gathered = ranks.gather((run.failures, timings, counts, written))
    if not ranks.is_main:
        return 0
    return finish(layout, options.models, gathered)


def _sweep_grid(grid: SweepGrid | None, predictor) -> SweepGrid | None:
    """The sweep's grid with the predictor's own setting in it, whose row must equal the dump's numbers."""
    return None if grid is None else grid.including(predictor.score_threshold, predictor.overlap_threshold)


def _merge_ranks(gathered) -> tuple[list[dict], dict, int, dict]:
    failures, counts, written, timings = [], {}, 0, {}
    for rank_failures, rank_timings, rank_counts, rank_written in gathered:
        failures += rank_failures
        counts.update(rank_counts)
        written += rank_written
        for name, (done, seconds) in rank_timings.items():
            old_done, old_seconds = timings.get(name, (0, 0.0))
            timings[name] = (old_done + done, max(old_seconds, seconds))  # ranks run side by side
    return failures, counts, written, timings


def _update_manifest(layout: Layout, timings: dict) -> dict:
    manifest = read_manifest(layout.root)
    for entry in manifest["images"]:
        path = layout.input_png(layout.image_name(entry["index"]))
        if entry["width"] is None and path.exists():
            with Image.open(path) as image:
                entry["width"], entry["height"] = image.size
    for model in manifest["models"]:
        model["images_done"] = sum(prediction_done(layout, layout.image_name(entry["index"]), model["name"],
                                                   task=model_task(model)) for entry in manifest["images"])
        done, seconds = timings.get(model["name"], (0, 0.0))
        if done:
            model["seconds_per_image"] = round(seconds / done, 6)
    write_manifest(layout, manifest)
    return manifest


def finish(layout: Layout, specs, gathered) -> int:
    """Main rank: updates the manifest and failures.json, rebuilds the aggregates, prints the summary."""
    failures, counts, written, timings = _merge_ranks(gathered)
    manifest = _update_manifest(layout, timings)
    names_run = {spec.name for spec in specs}
    kept = [f for f in read_failures(layout) if f["stage"] != "data" and f["stage"] not in names_run]
    failures = sorted(failures, key=lambda f: (f["index"], f["stage"])) + kept
    if failures or layout.file(FAILURES).exists():
        write_failures(layout, failures)

    if written or not aggregates_current(layout, manifest):
        dataset_level = build_aggregates(layout.root, counts)
    else:  # nothing new: the aggregate files are up to date and stay untouched
        dataset_level = json.loads(layout.file(INSTANCE_COUNTS).read_text())["dataset_level_metrics"]
    print_summary(manifest, dataset_level, timings, failures, _task_metrics(layout))
    if failures:
        print(f"{len(failures)} image(s) failed: see {layout.file(FAILURES)}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def reindex(out: str | Path) -> int:
    """Rebuilds the aggregate files of a folder from its panoptic/ files and prints the summary."""
    manifest = read_manifest(out)
    dataset_level = build_aggregates(out, progress=print)
    print_summary(manifest, dataset_level, {}, [], _task_metrics(Layout(out, len(manifest["images"]))))
    return 0


def _task_metrics(layout: Layout) -> dict:
    try:
        return json.loads(layout.file(TASK_METRICS).read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}


def _task_columns(metrics: dict | None) -> str:
    """mIoU (with the task it comes from) and mask AP of one model, x100."""
    semantic, instance = (metrics or {}).get("semantic"), (metrics or {}).get("instance")
    miou = semantic and semantic.get("miou")
    ap = instance and instance.get("ap")
    return (f"{'-' if miou is None else f'{100 * miou:5.1f}':>5} {'-' if ap is None else f'{100 * ap:5.1f}':>5}")


def print_summary(manifest: dict, dataset_level: dict, timings: dict, failures: list,
                  task_metrics: dict | None = None) -> None:
    """One row per model: its task, PQ/SQ/RQ (x100) for All/Things/Stuff, mIoU and mask AP (a panoptic model's
    from its class map and thing segments), images done and failed, images/s."""

    def pct(value) -> str:
        return "    -" if value is None else f"{100 * value:5.1f}"

    header = (f"{'model':<20} {'task':<8} {'PQ':>5} {'SQ':>5} {'RQ':>5} | {'PQth':>5} {'SQth':>5} {'RQth':>5} | "
              f"{'PQst':>5} {'SQst':>5} {'RQst':>5} | {'mIoU':>5} {'AP':>5} | {'done':>6} {'failed':>6} "
              f"{'img/s':>7}")
    print(header)
    print("-" * len(header))
    for model in manifest["models"]:
        name = model["name"]
        m = dataset_level.get(name) or {}
        done, seconds = timings.get(name, (0, 0.0))
        speed = f"{done / seconds:7.2f}" if done and seconds else "      -"
        n_failed = sum(1 for f in failures if f["stage"] == name)
        print(f"{name:<20} {model_task(model):<8} {pct(m.get('pq'))} {pct(m.get('sq'))} {pct(m.get('rq'))} | "
              f"{pct(m.get('pq_things'))} {pct(m.get('sq_things'))} {pct(m.get('rq_things'))} | "
              f"{pct(m.get('pq_stuff'))} {pct(m.get('sq_stuff'))} {pct(m.get('rq_stuff'))} | "
              f"{_task_columns((task_metrics or {}).get(name))} | {model['images_done']:>6} {n_failed:>6} {speed}")
    print("(mIoU of a panoptic model: its class map; AP: its thing segments with their scores)")
    if not manifest["dataset"].get("has_ground_truth", True):
        print("(no ground truth in this data: predictions only, no metrics)")
