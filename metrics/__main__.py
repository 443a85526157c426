"""python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image] [--workers N]
    [--engine auto|numpy]

Prints panopticapi's pq_compute result as JSON; per-image entries are null for images with no active category.
"""

from __future__ import annotations

import argparse
import json
import sys

from metrics.coco_panoptic import CocoPanopticError, pq_compute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics",
                                     description="Panoptic quality of COCO panoptic predictions, as panopticapi.")
    parser.add_argument("gt_json", help="ground truth COCO panoptic JSON")
    parser.add_argument("pred_json", help="prediction COCO panoptic JSON")
    parser.add_argument("--gt-folder", help="ground truth PNGs (default: GT_JSON without .json)")
    parser.add_argument("--pred-folder", help="prediction PNGs (default: PRED_JSON without .json)")
    parser.add_argument("--per-image", action="store_true", help="add PQ/SQ/RQ of every image")
    parser.add_argument("--workers", type=int, help="threads for image-by-image counting (default: all cores)")
    parser.add_argument("--engine", choices=["auto", "numpy"], default="auto",
                        help="auto: hotcoco counts dataset-level numbers when installed (same numbers); numpy: ours")
    args = parser.parse_args(argv)
    try:
        result = pq_compute(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder, args.per_image,
                            args.workers, args.engine)
    except CocoPanopticError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
