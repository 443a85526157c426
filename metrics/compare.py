"""python -m metrics compare GT_JSON A_JSON B_JSON: is model A's PQ really different from model B's?

Prints ΔPQ = PQ_A - PQ_B with its paired bootstrap interval (metrics.bootstrap) for All / Things / Stuff and per
category, as JSON. Both predictions are matched as pq_compute matches them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from metrics.bootstrap import counts_array, paired_bootstrap
from metrics.coco_panoptic import CocoPanopticError, image_counts_of_files


def _counts(gt_json, pred_json, gt_folder, pred_folder) -> tuple[dict[int, bool], dict]:
    try:
        return image_counts_of_files(gt_json, pred_json, gt_folder, pred_folder)
    except CocoPanopticError as e:
        if str(pred_json) in str(e) or str(gt_json) in str(e):
            raise
        raise CocoPanopticError(f"{pred_json}: {e}") from None


def compare_files(gt_json: str | os.PathLike, a_json: str | os.PathLike, b_json: str | os.PathLike,
                  gt_folder: str | os.PathLike | None = None, a_folder: str | os.PathLike | None = None,
                  b_folder: str | os.PathLike | None = None, resamples: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> dict:
    """ΔPQ of two COCO panoptic predictions of the same ground truth, with paired bootstrap intervals.

    Returns {"images", "resamples", "seed", "confidence", "All" | "Things" | "Stuff": {pq_a, pq_b, delta, low,
    high, significant}, "per_class": {id: the same}} with the categories active in either model.
    """
    categories, counts_a = _counts(gt_json, a_json, gt_folder, a_folder)
    _, counts_b = _counts(gt_json, b_json, gt_folder, b_folder)
    images, category_ids = list(counts_a), list(categories)
    result = paired_bootstrap(counts_array([counts_a[i] for i in images], category_ids),
                              counts_array([counts_b[i] for i in images], category_ids),
                              [categories[k] for k in category_ids], resamples, seed, confidence)
    output: dict = {"images": len(images), "resamples": resamples, "seed": seed, "confidence": confidence}
    output.update({group: result[group].as_dict() for group in ("All", "Things", "Stuff")})
    output["per_class"] = {k: interval.as_dict() for k, interval in zip(category_ids, result["per_class"], strict=True)
                           if interval.pq_a is not None or interval.pq_b is not None}
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics compare",
                                     description="ΔPQ of model A over model B with paired bootstrap intervals.")
    parser.add_argument("gt_json", help="ground truth COCO panoptic JSON")
    parser.add_argument("a_json", help="model A's COCO panoptic JSON")
    parser.add_argument("b_json", help="model B's COCO panoptic JSON")
    parser.add_argument("--gt-folder", help="ground truth PNGs (default: GT_JSON without .json)")
    parser.add_argument("--a-folder", help="model A's PNGs (default: A_JSON without .json)")
    parser.add_argument("--b-folder", help="model B's PNGs (default: B_JSON without .json)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default 0.95)")
    args = parser.parse_args(argv)
    if args.resamples < 1 or not 0 < args.confidence < 1:
        parser.error("--resamples must be at least 1 and --confidence between 0 and 1")
    try:
        result = compare_files(args.gt_json, args.a_json, args.b_json, args.gt_folder, args.a_folder,
                               args.b_folder, args.resamples, args.seed, args.confidence)
    except (CocoPanopticError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
