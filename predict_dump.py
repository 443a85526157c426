"""Runs EoMT models, each on its own task, over ADE20K, COCO or Cityscapes (or a folder of images) into one
comparable, resumable output folder.

    python predict_dump.py --data DIR --model NAME=SOURCE[@PRESET][@TASK] [--model ...] --out DIR [options]
    python predict_dump.py ... --backbone-weights [NAME=]BACKBONE  (DINOv3 delta checkpoints: their backbone)
    torchrun --nproc_per_node N predict_dump.py ...      (the images are sharded across the ranks)
    python predict_dump.py ... --sweep score=0.5:0.95:0.05 [overlap=0.6:0.9:0.1]
                                                         (also PQ per post-processing setting: sweep.json)
    python predict_dump.py --out DIR --reindex           (rebuild the aggregate files from panoptic/)
    python predict_dump.py --demo --out DIR              (the embedded demo: two toy models, toy validation split)

The folder format is defined in dump/folder.py (docs/output-folder.md). Exit status: 0 when every image of every
model is done, 3 when some images failed (named on the console and in failures.json), 1 when the run was refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from dump.folder import FolderError, OutputError, os_error_text
from dump.model_specs import parse_model_arg, read_models_file, with_backbones
from dump.run import EXIT_REFUSED, EXIT_SOME_FAILED, DumpOptions, dump, reindex
from dump.sweep import parse_sweep
from eomt.config import PRECISIONS

# torch and eomt are imported where a run needs them, so --help, --reindex and argument errors are quick.


@dataclass(frozen=True)
class Command:
    """What to do: a dump (`options`), or rebuild the aggregates (`reindex`), or the demo folder (`demo`)."""

    out: Path
    options: DumpOptions | None = None
    reindex: bool = False
    demo: bool = False
    overwrite: bool = False
    device: str = "auto"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="ADE20K, COCO or Cityscapes folder (the zips, or extracted) or a folder of "
                                       "images")
    parser.add_argument("--dataset", choices=["ade20k", "coco", "cityscapes"],
                        help="which dataset --data holds (default: what its files show)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=SOURCE[@PRESET][@TASK]",
                        help="a checkpoint file, a Hugging Face format folder or a hub repo id; TASK (panoptic, "
                             "semantic or instance) overrides the model's own; repeatable")
    parser.add_argument("--models-file", help="a file with lines 'name,source[@preset][@task][,backbone]'")
    parser.add_argument("--backbone-weights", action="append", default=[], metavar="[NAME=]BACKBONE",
                        help="the pretrained DINOv3 backbone of a delta checkpoint (file, folder or hub id): of "
                             "model NAME, or without NAME of every model that needs one; repeatable")
    parser.add_argument("--out", required=True, help="the output folder")
    parser.add_argument("--split", default="validation", choices=["validation", "training"])
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete what an earlier run wrote into --out and start again")
    parser.add_argument("--skip-constant", action="store_true",
                        help="skip images with a constant semantic map (EoMT's official validation set)")
    parser.add_argument("--sweep", nargs="+", metavar="KNOB=VALUES",
                        help="also count PQ for a grid of post-processing settings, e.g. score=0.5:0.95:0.05 "
                             "overlap=0.7,0.8,0.9 (start:stop:step or a list; the default setting is always in); "
                             "written to sweep.json")
    parser.add_argument("--reindex", action="store_true",
                        help="rebuild the aggregate files from panoptic/ (computing a missing error analysis from "
                             "the PNGs) and stop")
    parser.add_argument("--demo", action="store_true",
                        help="write the embedded demo folder (the shipped toy models over the toy validation split)")
    return parser


def parse_args(argv: list[str] | None) -> Command:
    """The command line as a Command; argparse's usage error (status 2) for inconsistent options, ValueError
    for a bad model argument or models file."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.demo and (args.data or args.model or args.models_file):
        parser.error("--demo brings its own data and models: leave out --data, --model and --models-file")
    if not (args.reindex or args.demo) and not args.data:
        parser.error("--data is required (unless --reindex or --demo)")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if (args.backbone_weights or args.dataset) and (args.reindex or args.demo):
        parser.error("--backbone-weights and --dataset go with a dump, not with --reindex or --demo")
    if args.sweep and (args.reindex or args.demo):
        parser.error("--sweep needs the models' logits: it goes with a dump, not with --reindex or --demo")
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be at least 1 and --workers at least 0")
    out = Path(args.out)
    if args.reindex or args.demo:
        return Command(out, reindex=args.reindex, demo=args.demo, overwrite=args.overwrite, device=args.device)
    specs = [parse_model_arg(text) for text in args.model]
    if args.models_file:
        specs += read_models_file(args.models_file)
    specs, default_backbone = with_backbones(specs, args.backbone_weights)
    return Command(out, DumpOptions(out=out, data=Path(args.data), models=tuple(specs), split=args.split,
                                    limit=args.limit, device=args.device, dtype=args.dtype,
                                    batch_size=args.batch_size, workers=args.workers, overwrite=args.overwrite,
                                    skip_constant=args.skip_constant,
                                    sweep=parse_sweep(args.sweep) if args.sweep else None,
                                    backbone=default_backbone, dataset=args.dataset))


def main(argv: list[str] | None = None) -> int:
    try:
        command = parse_args(argv)
        if command.reindex:
            return reindex(command.out)
        if command.demo:
            from dump.demo import build_demo_folder

            try:
                build_demo_folder(command.out, overwrite=command.overwrite, device=command.device)
            except RuntimeError as e:  # the dump inside has already named what failed
                print(f"predict_dump: {e}", file=sys.stderr)
                return EXIT_SOME_FAILED
            return 0
        return dump(command.options)
    except (FolderError, ValueError, FileNotFoundError, OutputError) as e:
        print(f"predict_dump: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:  # the output folder: read-only, a full disk, a folder where a file should be
        print(f"predict_dump: {os_error_text(e)}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
