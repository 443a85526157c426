"""python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image]
python -m metrics semantic GT_DIR PRED_DIR (--num-classes N | --classes NAME) [--ignore 255] [--per-image]
python -m metrics instance GT_JSON RESULTS_JSON [--per-image]

The first prints panopticapi's pq_compute result as JSON; per-image entries are null for images with no active
category. A first argument naming a subcommand (SUBCOMMANDS) runs that command instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from metrics import instance_cli, semantic_cli
from metrics.coco_panoptic import CocoPanopticError, pq_compute


def panoptic_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics",
                                     description="Panoptic quality of COCO panoptic predictions, as panopticapi.")
    parser.add_argument("gt_json", help="ground truth COCO panoptic JSON")
    parser.add_argument("pred_json", help="prediction COCO panoptic JSON")
    parser.add_argument("--gt-folder", help="ground truth PNGs (default: GT_JSON without .json)")
    parser.add_argument("--pred-folder", help="prediction PNGs (default: PRED_JSON without .json)")
    parser.add_argument("--per-image", action="store_true", help="add PQ/SQ/RQ of every image")
    args = parser.parse_args(argv)
    try:
        result = pq_compute(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder, args.per_image)
    except CocoPanopticError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {"semantic": semantic_cli.main, "instance": instance_cli.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return panoptic_main(argv)


if __name__ == "__main__":
    sys.exit(main())
