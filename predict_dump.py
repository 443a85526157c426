"""Runs EoMT models over ADE20K (or a folder of images) into one comparable, resumable output folder.

    python predict_dump.py --data DIR --model NAME=SOURCE[@PRESET] [--model ...] --out DIR [options]
    torchrun --nproc_per_node N predict_dump.py ...      (the images are sharded across the ranks)
    python predict_dump.py --out DIR --reindex           (rebuild the aggregate files from panoptic/)
    python predict_dump.py --demo --out DIR              (the embedded demo: two toy models, toy validation split)

The folder format is defined in metrics/output_folder.py. Exit status: 0 when every image of every model is done,
3 when some images failed (named on the console and in failures.json), 1 when the run was refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

from dump.aggregates import build_aggregates
from dump.folder import (
    CLASS_NAMES,
    FAILURES,
    INSTANCE_COUNTS,
    MANIFEST,
    SEGMENT_STATS,
    FolderError,
    Layout,
    check_model_name,
    new_manifest,
    read_failures,
    read_manifest,
    write_class_names,
    write_failures,
    write_manifest,
)
from dump.model_specs import check_unique, parse_model_arg, read_models_file
from dump.writer import data_done, prediction_done
from eomt.render import palette_array

# torch, eomt and dump are imported where a run needs them, so --help, --reindex and argument errors are quick.

EXIT_REFUSED = 1
EXIT_SOME_FAILED = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="ADE20K folder (the two zips, or extracted) or a folder of images")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=SOURCE[@PRESET]",
                        help="a checkpoint file, a Hugging Face format folder or a hub repo id; repeatable")
    parser.add_argument("--models-file", help="a file with lines 'name,source' (or 'name,source@preset')")
    parser.add_argument("--out", required=True, help="the output folder")
    parser.add_argument("--split", default="validation", choices=["validation", "training"])
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete what an earlier run wrote into --out and start again")
    parser.add_argument("--skip-constant", action="store_true",
                        help="skip images with a constant semantic map (EoMT's official validation set)")
    parser.add_argument("--reindex", action="store_true", help="rebuild the aggregate files from panoptic/ and stop")
    parser.add_argument("--demo", action="store_true",
                        help="write the embedded demo folder (the shipped toy models over the toy validation split)")
    args = parser.parse_args(argv)
    if args.demo and (args.data or args.model or args.models_file):
        parser.error("--demo brings its own data and models: leave out --data, --model and --models-file")
    if not (args.reindex or args.demo) and not args.data:
        parser.error("--data is required (unless --reindex or --demo)")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be at least 1 and --workers at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    try:
        if args.reindex:
            return reindex(Path(args.out))
        if args.demo:
            from dump.demo import build_demo_folder

            try:
                build_demo_folder(args.out, overwrite=args.overwrite, device=args.device)
            except RuntimeError as e:  # the dump inside has already named what failed
                print(f"predict_dump: {e}", file=sys.stderr)
                return EXIT_SOME_FAILED
            return 0
        return run(args)
    except (FolderError, ValueError, FileNotFoundError) as e:
        print(f"predict_dump: {e}", file=sys.stderr)
        return EXIT_REFUSED


def reindex(out: Path) -> int:

    manifest = read_manifest(out)
    dataset_level = build_aggregates(out, progress=print)
    print_summary(manifest, dataset_level, {}, {})
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    import eomt
    from eomt.devices import init_ranks, resolve_device
    from segdata.detect import (
        dataset_classes,
        dataset_identity,
        has_ground_truth,
        model_classes,
        open_dataset,
    )

    specs = [parse_model_arg(text) for text in args.model]
    if args.models_file:
        specs += read_models_file(args.models_file)
    specs = check_unique(specs)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]

    ranks = init_ranks(args.device)
    try:
        device = resolve_device(args.device, ranks.local_rank)
        if dtype is torch.float16 and device == "cpu":
            raise ValueError("--dtype fp16 needs a CUDA device; on CPU use fp32 or bf16")
        dataset = open_dataset(args.data, args.split, args.skip_constant)
        with_gt = has_ground_truth(dataset)
        indices = list(range(len(dataset)))[: args.limit]
        if not indices:
            raise ValueError(f"--data {args.data}: the {args.split} split has no images")
        models = {}
        for spec in specs:
            try:
                models[spec.name] = eomt.load_model(spec.source, preset=spec.preset, device=device)
            except Exception as e:
                raise ValueError(f"model {spec.name!r} ({spec.source}) does not load: {e}") from None
        classes = dataset_classes() if with_gt else model_classes(next(iter(models.values())).config)
        for spec in specs:
            config = models[spec.name].config
            if config.num_classes != len(classes):
                raise ValueError(f"model {spec.name!r} predicts {config.num_classes} classes, the data has "
                                 f"{len(classes)}: its predictions could not be compared")
        layout = Layout(args.out, len(indices))
        identity = dataset_identity(dataset, args.data, args.split, args.skip_constant)
        failure = None
        if ranks.is_main:
            try:
                prepare_folder(layout, dataset, indices, identity, specs, models, classes, device, args)
            except ValueError as e:
                failure = str(e)
        failure = ranks.broadcast(failure)
        if failure:
            raise ValueError(failure)
        return dump(layout, dataset, indices, with_gt, specs, models, classes, dtype, ranks, args)
    finally:
        ranks.close()


def prepare_folder(layout, dataset, indices, identity, specs, models, classes, device, args) -> None:
    """Checks that --out may be written for this data (or empties it with --overwrite) and writes the manifest."""

    previous = None
    if (layout.root / MANIFEST).exists():
        if args.overwrite:
            clear_folder(layout.root)
        else:
            previous = read_manifest(layout.root)
            old = {k: v for k, v in previous["dataset"].items() if k in identity}
            if old != identity:
                raise ValueError(f"{layout.root} was written for other data ({previous['dataset']}), not "
                                 f"{identity}: choose another --out or pass --overwrite")
            old_n = len(previous["images"])
            if Layout(layout.root, old_n).image_name(0) != layout.image_name(0):
                raise ValueError(f"{layout.root} holds {old_n} images named with another number of digits than "
                                 f"{len(indices)} images need: pass --overwrite or the same --limit")
    elif layout.root.exists() and any(layout.root.iterdir()) and not args.overwrite:
        if any(layout.root.glob("val_*")) or (layout.root / "panoptic").exists():
            raise ValueError(f"{layout.root} holds dump files but no manifest.json: pass --overwrite to start again")

    old_images = {entry["index"]: entry for entry in (previous or {}).get("images", [])}
    images = []
    for index in indices:
        entry = {"index": index, "key": dataset.keys[index], "stem": dataset.stems[index],
                 "width": None, "height": None}
        old = old_images.get(index)
        if old is not None:
            if old["key"] != entry["key"]:
                raise ValueError(f"{layout.root}: image {index} was {old['key']}, now {entry['key']}: the data "
                                 "changed; pass --overwrite")
            entry["width"], entry["height"] = old.get("width"), old.get("height")
        images.append(entry)

    old_models = {m["name"]: m for m in (previous or {}).get("models", [])}
    model_entries = []
    for spec in specs:
        config = models[spec.name].config
        entry = {"name": spec.name, "source": spec.source, "preset": spec.preset, "img_size": config.img_size,
                 "device": device, "dtype": args.dtype, "images_done": 0, "seconds_per_image": None}
        old = old_models.pop(spec.name, None)
        if old is not None:
            if (old["source"], old.get("preset")) != (spec.source, spec.preset):
                raise ValueError(f"{layout.root}: model {spec.name!r} was written from {old['source']}"
                                 f"{'@' + old['preset'] if old.get('preset') else ''}; now {spec.source}: use "
                                 "another name or --overwrite")
            entry["images_done"], entry["seconds_per_image"] = old["images_done"], old["seconds_per_image"]
        model_entries.append(entry)
    # Models of earlier runs that this run does not name stay in the folder and in the comparison.
    for old in old_models.values():
        check_model_name(old["name"])
        model_entries.append(old)
    manifest = new_manifest(identity, images, model_entries, classes)
    if previous is not None:
        manifest = {**previous, **manifest}
    layout.root.mkdir(parents=True, exist_ok=True)
    write_manifest(layout, manifest)
    write_class_names(layout, classes)


def clear_folder(root: Path) -> None:
    """Deletes the files a dump writes (and nothing else) from `root`."""

    for name in (MANIFEST, CLASS_NAMES, FAILURES, SEGMENT_STATS, INSTANCE_COUNTS):
        (root / name).unlink(missing_ok=True)
    for path in root.glob("val_*.png"):
        path.unlink()
    shutil.rmtree(root / "panoptic", ignore_errors=True)


def dump(layout, dataset, indices, with_gt, specs, models, classes, dtype, ranks, args) -> int:
    import eomt
    from dump.passes import run_model, write_data_files

    colors = palette_array([c["color"] for c in classes])[:-1]
    failures: list[dict] = []

    def failed(stage: str):
        def record(index: int, reason: str) -> None:
            image = layout.image_name(index)
            failures.append({"image": image, "index": index, "stage": stage, "reason": reason})
            print(f"\n{image} ({dataset.keys[index]}), {stage}: {reason}", file=sys.stderr)
        return record

    shard = ranks.shard(indices)
    todo = [i for i in shard if not data_done(layout, layout.image_name(i), with_gt)]
    written = write_data_files(layout, dataset, todo, colors, with_gt, args.workers, failed("data"), ranks.is_main)
    ranks.barrier()

    readable = [i for i in shard if layout.input_png(layout.image_name(i)).exists()]
    timings, counts = {}, {}
    for spec in specs:
        predictor = eomt.Predictor(models[spec.name], dtype=dtype)
        todo = [i for i in readable if not prediction_done(layout, layout.image_name(i), spec.name)]
        outcome = run_model(layout, dataset, todo, predictor, spec.name, colors, with_gt, args.batch_size,
                            args.workers, failed(spec.name), ranks.is_main)
        timings[spec.name] = (outcome.done, outcome.seconds)
        counts.update(outcome.counts)
        written += outcome.done
        del predictor
    ranks.barrier()

    gathered = ranks.gather((failures, timings, counts, written))
    if not ranks.is_main:
        return 0
    return finish(layout, specs, gathered)


def finish(layout, specs, gathered) -> int:
    """Main rank: updates the manifest and failures.json, rebuilds the aggregates, prints the summary."""


    failures, counts, written, timings = [], {}, 0, {}
    for rank_failures, rank_timings, rank_counts, rank_written in gathered:
        failures += rank_failures
        counts.update(rank_counts)
        written += rank_written
        for name, (done, seconds) in rank_timings.items():
            old_done, old_seconds = timings.get(name, (0, 0.0))
            timings[name] = (old_done + done, max(old_seconds, seconds))  # ranks run side by side

    manifest = read_manifest(layout.root)
    for entry in manifest["images"]:
        path = layout.input_png(layout.image_name(entry["index"]))
        if entry["width"] is None and path.exists():
            with Image.open(path) as image:
                entry["width"], entry["height"] = image.size
    names_run = {spec.name for spec in specs}
    for model in manifest["models"]:
        model["images_done"] = sum(prediction_done(layout, layout.image_name(entry["index"]), model["name"])
                                   for entry in manifest["images"])
        done, seconds = timings.get(model["name"], (0, 0.0))
        if done:
            model["seconds_per_image"] = round(seconds / done, 6)
    write_manifest(layout, manifest)
    kept = [f for f in read_failures(layout) if f["stage"] != "data" and f["stage"] not in names_run]
    failures = sorted(failures, key=lambda f: (f["index"], f["stage"])) + kept
    if failures or layout.file(FAILURES).exists():
        write_failures(layout, failures)

    if written or not layout.file(INSTANCE_COUNTS).exists():
        dataset_level = build_aggregates(layout.root, counts)
    else:  # nothing new: the aggregate files are up to date and stay untouched
        dataset_level = json.loads(layout.file(INSTANCE_COUNTS).read_text())["dataset_level_metrics"]
    print_summary(manifest, dataset_level, timings, failures)
    if failures:
        print(f"{len(failures)} image(s) failed: see {layout.file(FAILURES)}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def print_summary(manifest: dict, dataset_level: dict, timings: dict, failures: list) -> None:
    """One row per model: PQ/SQ/RQ (x100) for All/Things/Stuff, images done and failed, images/s."""

    def pct(value) -> str:
        return "   -" if value is None else f"{100 * value:5.1f}"

    header = (f"{'model':<20} {'PQ':>5} {'SQ':>5} {'RQ':>5} | {'PQth':>5} {'SQth':>5} {'RQth':>5} | "
              f"{'PQst':>5} {'SQst':>5} {'RQst':>5} | {'done':>6} {'failed':>6} {'img/s':>7}")
    print(header)
    print("-" * len(header))
    for model in manifest["models"]:
        name = model["name"]
        m = dataset_level.get(name) or {}
        done, seconds = timings.get(name, (0, 0.0))
        speed = f"{done / seconds:7.2f}" if done and seconds else "      -"
        n_failed = sum(1 for f in failures if f["stage"] == name)
        print(f"{name:<20} {pct(m.get('pq'))} {pct(m.get('sq'))} {pct(m.get('rq'))} | "
              f"{pct(m.get('pq_things'))} {pct(m.get('sq_things'))} {pct(m.get('rq_things'))} | "
              f"{pct(m.get('pq_stuff'))} {pct(m.get('sq_stuff'))} {pct(m.get('rq_stuff'))} | "
              f"{model['images_done']:>6} {n_failed:>6} {speed}")
    if not manifest["dataset"].get("has_ground_truth", True):
        print("(no ground truth in this data: predictions only, no metrics)")


if __name__ == "__main__":
    sys.exit(main())
