"""python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image]
                                     [--errors] [--boundary] [--sizes] [--workers N] [--engine auto|numpy]
python -m metrics compare GT_JSON A_JSON B_JSON [--gt-folder DIR] [--a-folder DIR] [--b-folder DIR]
python -m metrics semantic GT_DIR PRED_DIR (--num-classes N | --classes NAME) [--ignore 255] [--per-image]
python -m metrics instance GT_JSON RESULTS_JSON [--per-image] [--diagnostics] [--compare OTHER_RESULTS_JSON]

The first prints panopticapi's pq_compute result as JSON (per-image entries are null for images with no active
category), plus the error table, Boundary PQ and PQ by size when asked. A first argument naming a subcommand
(SUBCOMMANDS) runs that command instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from metrics import compare, instance_cli, pq, semantic_cli
from metrics.analysis import analyze_files, sum_analyses, summaries
from metrics.coco_panoptic import CocoPanopticError, pq_compute, pq_result
from metrics.errors import error_table


def _with_analysis(args: argparse.Namespace) -> dict:
    categories, counts, analyses = analyze_files(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder,
                                                 args.workers)
    result = pq_result(list(counts.items()), categories, args.per_image)
    extra = summaries(pq.sum_counts(counts.values()), sum_analyses(analyses.values()), categories)
    if args.errors:
        result["errors"] = extra["errors"]
        if args.per_image:
            result["errors"]["per_image"] = {}
            for image_id, image_counts in counts.items():
                table = error_table(image_counts, analyses[image_id].errors, categories)["All"]
                result["errors"]["per_image"][image_id] = table if table["n"] else None
    if args.boundary:
        result["boundary"] = extra["boundary"]
        if args.per_image:
            result["boundary"]["per_image"] = {}
            for image_id, analysis in analyses.items():
                overall = pq.pq_summary(analysis.boundary, categories)["All"]
                result["boundary"]["per_image"][image_id] = overall if overall["n"] else None
    if args.sizes:
        result["sizes"] = extra["sizes"]
    return result


def panoptic_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics",
                                     description="Panoptic quality of COCO panoptic predictions, as panopticapi; "
                                                 f"subcommands: {', '.join(SUBCOMMANDS)} (python -m metrics "
                                                 "SUBCOMMAND --help).")
    parser.add_argument("gt_json", help="ground truth COCO panoptic JSON")
    parser.add_argument("pred_json", help="prediction COCO panoptic JSON")
    parser.add_argument("--gt-folder", help="ground truth PNGs (default: GT_JSON without .json)")
    parser.add_argument("--pred-folder", help="prediction PNGs (default: PRED_JSON without .json)")
    parser.add_argument("--per-image", action="store_true", help="add PQ/SQ/RQ of every image")
    parser.add_argument("--errors", action="store_true",
                        help='add "errors": error types and ΔPQ if fixed, overall and per class (and per image)')
    parser.add_argument("--boundary", action="store_true", help='add "boundary": Boundary PQ/SQ/RQ')
    parser.add_argument("--sizes", action="store_true", help='add "sizes": PQ/SQ/RQ of small, medium, large segments')
    parser.add_argument("--workers", type=int,
                        help="threads for image-by-image counting and analysis (default: all cores)")
    parser.add_argument("--engine", choices=["auto", "numpy"], default="auto",
                        help="auto: hotcoco counts dataset-level numbers when installed (same numbers); numpy: ours "
                             "(always ours with --per-image, --errors, --boundary, --sizes)")
    args = parser.parse_args(argv)
    try:
        if args.errors or args.boundary or args.sizes:
            result = _with_analysis(args)
        else:
            result = pq_compute(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder, args.per_image,
                                args.workers, args.engine)
    except CocoPanopticError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {"compare": compare.main, "semantic": semantic_cli.main,
                                                       "instance": instance_cli.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return panoptic_main(argv)


if __name__ == "__main__":
    sys.exit(main())
