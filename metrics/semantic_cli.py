"""python -m metrics semantic GT_DIR PRED_DIR [--num-classes N | --classes NAME_OR_FILE] [--ignore 255]
                                 [--reduce-zero-label] [--per-image]

Scores label PNGs made by any tool: every `*.png` under GT_DIR (class id per pixel, IGNORE where unlabeled) is
paired with the PNG of the same stem under PRED_DIR (class id per pixel; a value outside the classes is a
prediction of no class). Prints JSON: {"miou", "fwiou", "aacc", "macc", "n_classes", "n_images", "per_class"}
(+ "per_image": {stem: mIoU of that image or null}); rules in docs/metrics.md, "Semantic metrics".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from metrics import semantic

_CLASS_TABLES = ("ade20k", "coco", "cityscapes")


class InputError(ValueError):
    pass


def class_names(spec: str) -> list[str]:
    """The class names of a dataset name (ade20k, coco = the 133 panoptic classes, cityscapes) or of a text file
    with one name per line."""
    if spec in _CLASS_TABLES:
        from eomt import classes  # the class tables import without torch

        table = {"ade20k": classes.ade20k_classes, "coco": classes.coco_panoptic_classes,
                 "cityscapes": classes.cityscapes_classes}[spec]()
        return [c.name for c in table]
    try:
        names = [line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--classes {spec}: neither one of {_CLASS_TABLES} nor a readable file ({e})") from None
    if not names:
        raise InputError(f"--classes {spec}: no class names in the file")
    return names


def read_labels(path: Path) -> np.ndarray:
    """A single-channel label PNG (8-bit, palette indices or 16-bit) as an integer array."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise InputError(f"{path}: a label PNG must have one channel, this one is mode {image.mode}")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: cannot read PNG ({e})") from None


def label_files(folder: Path, what: str) -> dict[str, Path]:
    """{stem: path} of the PNGs under `folder` (any depth); InputError for a missing folder or a repeated stem."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder ({what})")
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.png")):
        if path.stem in files:
            raise InputError(f"{folder}: two {what} files named {path.stem}.png ({files[path.stem]}, {path})")
        files[path.stem] = path
    return files


def evaluate(gt_dir: Path, pred_dir: Path, num_classes: int, ignore: int, reduce_zero_label: bool,
             per_image: bool) -> dict:
    gts, preds = label_files(gt_dir, "ground truth"), label_files(pred_dir, "prediction")
    if not gts:
        raise InputError(f"{gt_dir}: no .png files")
    missing = [stem for stem in gts if stem not in preds]
    if missing:
        raise InputError(f"{pred_dir}: no prediction for {missing[0]}.png"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    matrix = semantic.ConfusionMatrix(num_classes, ignore)
    images = {}
    for stem, gt_path in gts.items():
        gt, pred = read_labels(gt_path), read_labels(preds[stem])
        if reduce_zero_label:  # ADE20K's PNGs as stored: 0 = unlabeled, v = class v - 1
            gt = np.where(gt == 0, ignore, gt.astype(np.int64) - 1)
        if gt.shape != pred.shape:
            raise InputError(f"{preds[stem]}: prediction is {pred.shape[1]}x{pred.shape[0]}, the ground truth "
                             f"is {gt.shape[1]}x{gt.shape[0]}")
        try:
            images[stem] = matrix.update(gt, pred).miou()
        except ValueError as e:
            raise InputError(f"{gt_path}: {e}") from None
    result = semantic.summary(matrix.counts())
    result["n_images"] = len(gts)
    if per_image:
        result["per_image"] = images
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics semantic",
                                     description="mIoU, fwIoU, aAcc and mAcc of label PNG folders.")
    parser.add_argument("gt_dir", type=Path, help="ground truth label PNGs (class ids, IGNORE = unlabeled)")
    parser.add_argument("pred_dir", type=Path, help="predicted label PNGs, same stems")
    classes = parser.add_mutually_exclusive_group(required=True)
    classes.add_argument("--num-classes", type=int, help="number of classes (ids 0..N-1)")
    classes.add_argument("--classes", help="ade20k, coco, cityscapes, or a file with one class name per line")
    parser.add_argument("--ignore", type=int, default=semantic.IGNORE, help="ground-truth label left out (255)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="ground truth as ADE20K stores it: 0 = unlabeled, v = class v - 1")
    parser.add_argument("--per-image", action="store_true", help="add the mIoU of every image")
    args = parser.parse_args(argv)
    try:
        names = class_names(args.classes) if args.classes else None
        num_classes = len(names) if names else args.num_classes
        if num_classes < 1:
            raise InputError(f"--num-classes must be at least 1, got {num_classes}")
        result = evaluate(args.gt_dir, args.pred_dir, num_classes, args.ignore, args.reduce_zero_label,
                          args.per_image)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if names:
        for class_id, entry in result["per_class"].items():
            entry["name"] = names[class_id]
    print(json.dumps(result, indent=2))
    return 0
