"""End-to-end speed of predict_dump.py against the bare model forward on the same images and model, per task.

    python bench/dump.py [--images 24] [--backbone vit_small_patch14_reg4_dinov2] [--img-size 640] [--device cpu]
                         [--tasks panoptic semantic instance]

Generates an ADE20K-format dataset of 683x512 images and, per task, builds a random (sharpened, so that it
predicts segments) model of that task, times the bare forward over the pre-processed images (padded images for
panoptic and instance, every sliding window for semantic), the predictor (forward and the task's post-processing,
eomt.Predictor), then a full dump of the same images with that model, and prints them in images/s with the overhead
ratios (target: the dump within 15% of the bare forward; the ratio to the predictor is the dump's own cost: reading,
files, every task's metrics and the aggregates). Then the panoptic
dump with the threshold sweep (`--sweep`, default score=0.5:0.95:0.05, 10 settings) and its extra cost per image
and setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eomt  # noqa: E402
import predict_dump  # noqa: E402
from eomt.config import PRECISIONS  # noqa: E402
from eomt.transforms import resize_and_pad, sliding_windows  # noqa: E402
from segdata.ade20k import ADE20K  # noqa: E402
from synthetic.ade20k import write_toy_ade20k  # noqa: E402
from synthetic.models import confident_model  # noqa: E402


def keep_realistic_number_of_queries(model, image, img_size: int, kept: int) -> None:
    """Sets a constant no-object logit so that about `kept` queries pass the score threshold, as with a trained
    model: post-processing cost grows with the kept queries, and a random sharpened head keeps nearly all."""
    pixels = resize_and_pad(image, img_size)[0][None].float() / 255
    with torch.inference_mode():
        class_logits = model(pixels)[1][0]
    best_object = class_logits[:, :-1].max(-1).values.sort(descending=True).values
    with torch.no_grad():
        model.class_head.weight[-1] = 0.0
        model.class_head.bias[-1] = float(best_object[min(kept, len(best_object) - 1)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--backbone", default="vit_small_patch14_reg4_dinov2")
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kept", type=int, default=40,
                        help="queries per image that pass the score threshold (a trained ADE20K model keeps tens)")
    parser.add_argument("--backend", default="pytorch", choices=["pytorch", "onnxruntime"],
                        help="run the model in PyTorch or exported to ONNX and run by ONNX Runtime")
    parser.add_argument("--tasks", nargs="+", default=["panoptic", "semantic", "instance"],
                        choices=["panoptic", "semantic", "instance"])
    parser.add_argument("--sweep", nargs="+", default=["score=0.5:0.95:0.05"], metavar="KNOB=VALUES",
                        help="the grid of the sweep run (predict_dump.py --sweep); 'none' to skip it")
    return parser


def _model(args, task: str, image) -> eomt.EoMT:
    ade = eomt.PRESETS["ade20k_panoptic_eomt_large_640"]
    num_blocks = 4 if "large" in args.backbone else 3
    config = eomt.EoMTConfig(backbone=args.backbone, img_size=args.img_size, num_classes=150,
                             num_queries=args.queries, num_blocks=num_blocks, task=task,
                             class_names=ade.class_names, stuff_classes=ade.stuff_classes,
                             class_colors=ade.class_colors)
    model = confident_model(config, seed=0)
    keep_realistic_number_of_queries(model, image, args.img_size, args.kept)
    return model


def _bare_forward(predictor, dataset, args, task: str) -> float:
    """Images/s of the forward alone over the pre-processed inputs (a semantic image is all its windows)."""
    inputs = [sliding_windows(dataset.read_image(i), args.img_size)[0] if task == "semantic" else
              resize_and_pad(dataset.read_image(i), args.img_size)[0][None] for i in range(len(dataset))]
    batches = [torch.cat(inputs[start:start + args.batch_size]) for start in range(0, len(inputs), args.batch_size)]
    predictor.forward(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        predictor.forward(batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(inputs) / (time.perf_counter() - start)


def _predictor_alone(predictor, dataset, args, task: str) -> float:
    """Images/s of the predictor (pre-processing, forward and the task's post-processing) on decoded images."""
    images = [dataset.read_image(i) for i in range(len(dataset))]
    run = {"panoptic": predictor.panoptic_batch, "semantic": predictor.semantic_batch,
           "instance": predictor.instance_batch}[task]
    start = time.perf_counter()
    for first in range(0, len(images), args.batch_size):
        run(images[first:first + args.batch_size])
    return len(images) / (time.perf_counter() - start)


def _run_task(args, tmp: Path, data: Path, task: str) -> dict:
    dataset = ADE20K(data)
    checkpoint = tmp / f"{task}.safetensors"
    model = _model(args, task, dataset.read_image(0))
    eomt.save_model(model, checkpoint)
    if args.backend == "onnxruntime":  # the same network, exported and run by ONNX Runtime everywhere below
        from eomt.onnx import export

        checkpoint = export(model, tmp / f"{task}.onnx")
    predictor = eomt.Predictor(eomt.load_model(checkpoint, device=args.device), dtype=args.dtype)
    bare = _bare_forward(predictor, dataset, args, task)
    alone = _predictor_alone(predictor, dataset, args, task)
    common = ["--data", str(data), "--model", f"bench={checkpoint}", "--device", args.device, "--dtype",
              args.dtype, "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    start = time.perf_counter()
    assert predict_dump.main([*common, "--out", str(tmp / task)]) == 0
    dump_seconds = time.perf_counter() - start
    # The model's pass alone (forward, post-processing, files and counts of each image, overlapped), as the dump
    # records it: the dump without its fixed costs (model load, data files, aggregates), which long runs amortise.
    manifest = json.loads((tmp / task / "manifest.json").read_text())
    per_image = next(m for m in manifest["models"] if m["name"] == "bench")["seconds_per_image"]
    result = {"task": task, "bare": bare, "predictor": alone, "dump": args.images / dump_seconds,
              "pass": 1 / per_image, "seconds": dump_seconds, "common": common}
    if task == "panoptic":
        annotations = json.loads((tmp / task / "panoptic" / "bench.json").read_text())["annotations"]
        result["segments"] = sum(len(a["segments_info"]) for a in annotations) / len(annotations)
    return result


def _sweep(args, tmp: Path, panoptic: dict) -> tuple[float, int]:
    start = time.perf_counter()
    assert predict_dump.main([*panoptic["common"], "--out", str(tmp / "swept"), "--sweep", *args.sweep]) == 0
    sweep_seconds = time.perf_counter() - start
    n_settings = len(json.loads((tmp / "swept" / "sweep.json").read_text())["models"]["bench"]["results"])
    return sweep_seconds, n_settings


def main() -> None:
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_toy_ade20k(tmp / "ade", args.images, size=(512, 683))
        results = [_run_task(args, tmp, data, task) for task in args.tasks]
        panoptic = next((r for r in results if r["task"] == "panoptic"), None)
        sweep = _sweep(args, tmp, panoptic) if panoptic is not None and args.sweep != ["none"] else None

    print(f"\n{args.backbone} at {args.img_size}, {args.queries} queries, {args.images} images of 683x512, "
          f"device {args.device}, {args.backend} {args.dtype}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, "
          f"about {args.kept} kept queries"
          + (f", {panoptic['segments']:.1f} panoptic segments per image" if panoptic else ""))
    for r in results:
        print(f"{r['task']:<9} bare forward {r['bare']:6.2f}   predictor {r['predictor']:6.2f}   predict_dump (all) "
              f"{r['dump']:6.2f} images/s   dump / bare {r['dump'] / r['bare']:.3f} (overhead "
              f"{100 * (r['bare'] / r['dump'] - 1):.1f}% of the forward time; target <= 15%)   dump / predictor "
              f"{r['dump'] / r['predictor']:.3f} (the dump's own cost {100 * (r['predictor'] / r['dump'] - 1):.1f}%)")
        print(f"{'':<9} the model's pass alone {r['pass']:6.2f} images/s   pass / bare {r['pass'] / r['bare']:.3f} "
              f"(overhead {100 * (r['bare'] / r['pass'] - 1):.1f}%)   pass / predictor "
              f"{r['pass'] / r['predictor']:.3f}")
    print("(the dump: model load, data files, metrics of every task and aggregates included; the pass: each image's "
          "forward, post-processing, files and counts, without those fixed costs; the predictor: the forward and "
          "the task's post-processing; semantic: every sliding window, everywhere)")
    if sweep is not None:
        sweep_seconds, n_settings = sweep
        extra = (sweep_seconds - panoptic["seconds"]) / args.images
        print(f"dump with --sweep   {args.images / sweep_seconds:8.2f} images/s   ({' '.join(args.sweep)}: "
              f"{n_settings} settings)")
        print(f"sweep extra cost    {1000 * extra:8.1f} ms per image, {1000 * extra / n_settings:.1f} ms per image "
              f"and setting ({100 * extra / (1 / panoptic['bare']) / n_settings:.1f}% of a bare forward per setting)")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
