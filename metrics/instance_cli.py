"""python -m metrics instance GT_JSON RESULTS_JSON [--per-image] [--diagnostics] [--compare OTHER_RESULTS_JSON]

COCO mask AP of a results file (a list of {"image_id", "category_id", "segmentation" (RLE), "score"}) against a
COCO instance annotation file, as pycocotools computes it. Prints JSON: {"ap", "ap50", "ap75", "ap_small",
"ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large", "per_class": {category id:
{"name", "ap"}}} (+ "per_image": {image id: {"tp50", "fp50", "fn50", "ap50", "tp75", "fp75", "fn75", "ap75"}},
the APs the image's own: the mean over its categories with ground truth of what COCOeval gives for the image
alone, null without) (+ "tide", "calibration": metrics.instance.diagnose) (+ "compare":
metrics.instance.compare_ap); rules in docs/metrics.md, "Mask AP".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from metrics import instance
from metrics.coco_panoptic import load_json


class InputError(ValueError):
    pass


def _load(path: Path, kind: type, what: str):
    document = load_json(path, InputError)
    if not isinstance(document, kind):
        raise InputError(f"{path}: {what}")
    return document


def load_ground_truth(path: Path) -> dict:
    document = _load(path, dict, "a COCO instance file is an object with 'images', 'annotations', 'categories'")
    if not all(isinstance(document.get(k), list) for k in ("images", "annotations", "categories")):
        raise InputError(f"{path}: a COCO instance file needs 'images', 'annotations' and 'categories' lists")
    return document


def load_results(path: Path) -> list[dict]:
    results = _load(path, list, "a COCO results file is a list of results")
    for r in results:
        if not isinstance(r, dict) or not {"image_id", "category_id", "segmentation", "score"} <= r.keys():
            raise InputError(f"{path}: every result needs 'image_id', 'category_id', 'segmentation' and 'score'")
    return results


def per_image_counts(gt: dict, results: list[dict]) -> dict:
    annotations, detections = defaultdict(list), defaultdict(list)
    for a in gt["annotations"]:
        annotations[a["image_id"]].append(a)
    for r in results:
        detections[r["image_id"]].append(r)
    rows = {}
    for image in gt["images"]:
        counts = instance.image_counts(annotations[image["id"]], detections[image["id"]], image["height"],
                                       image["width"])
        row = {}
        for threshold, per_category in counts.items():
            total = instance.total_counts(per_category)
            aps = [c.ap for c in per_category.values() if c.ap is not None]
            suffix = round(threshold * 100)
            row.update({f"tp{suffix}": total.tp, f"fp{suffix}": total.fp, f"fn{suffix}": total.fn,
                        f"ap{suffix}": sum(aps) / len(aps) if aps else None})
        rows[image["id"]] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics instance",
                                     description="COCO mask AP of a results file, as pycocotools computes it.")
    parser.add_argument("gt_json", type=Path, help="COCO instance annotations (e.g. instances_val2017.json)")
    parser.add_argument("results_json", type=Path, help="COCO results: [{image_id, category_id, segmentation, score}]")
    parser.add_argument("--per-image", action="store_true",
                        help="add TP/FP/FN and AP of every image at IoU 0.5 and 0.75")
    parser.add_argument("--diagnostics", action="store_true",
                        help='add "tide" (error types and ΔAP if fixed, at IoU 0.5) and "calibration" (ECE, MCE)')
    parser.add_argument("--compare", type=Path, metavar="OTHER_RESULTS_JSON",
                        help='add "compare": AP, AP50, AP75 of these results (A) and the other (B), A − B with a '
                             f"paired bootstrap 95%% interval over the images ({instance.COMPARE_RESAMPLES:,} "
                             f"resamples, seed {instance.COMPARE_SEED})")
    args = parser.parse_args(argv)
    try:
        gt, results = load_ground_truth(args.gt_json), load_results(args.results_json)
        result = instance.mask_ap(gt, results, diagnostics=args.diagnostics)
        names = {c["id"]: c.get("name") for c in gt["categories"]}
        result["per_class"] = {c: {"name": names[c], "ap": ap} for c, ap in result["per_class"].items()}
        if args.per_image:
            result["per_image"] = per_image_counts(gt, results)
        if args.compare:
            result["compare"] = instance.compare_ap(gt, results, load_results(args.compare))
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
