"""Command line: predict one photo and write a coloured picture of the prediction; export a model to ONNX.

    python -m eomt predict IMAGE --model SOURCE [--preset NAME] [--task panoptic|instance|semantic] --out OUT.png
                           [--device auto|cpu|cuda] [--dtype fp32|bf16|fp16] [--backbone-weights BACKBONE]
    python -m eomt export --model SOURCE [--preset NAME] [--backbone-weights BACKBONE] --out MODEL.onnx
                          [--opset 18] [--batch dynamic|N]

SOURCE: a checkpoint file (.bin/.pt/.pth/.safetensors, or a .onnx from `export` for predict), a Hugging Face
format folder, a hub repo id such as tue-mps/ade20k_panoptic_eomt_large_640, or a preset name. predict prints the
segments, one per line; export prints how far ONNX Runtime's logits are from PyTorch's on a random batch.
BACKBONE: the pretrained DINOv3 backbone a delta checkpoint (the published *_dinov3 models) is relative to: a
file or folder of Meta's or transformers' weights, or a hub id such as facebook/dinov3-vitl16-pretrain-lvd1689m.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from eomt import atomic
from eomt.config import PRECISIONS, TASKS
from eomt.images import MAX_BYTES, MAX_PIXELS
from eomt.render import render_panoptic

INSTANCE_MIN_SCORE = 0.5  # instances drawn and listed; the predictor returns the top 100 whatever their score


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eomt", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict one image and write a coloured PNG")
    predict.add_argument("image", type=Path)
    predict.add_argument("--model", required=True, help="checkpoint file, HF folder, hub repo id or preset name")
    predict.add_argument("--preset", help="architecture preset, when the source does not tell")
    predict.add_argument("--task", choices=TASKS,
                         help="default: the task the model was trained for")
    predict.add_argument("--out", type=Path, required=True, help="output PNG")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--dtype", default="fp32", choices=PRECISIONS)
    predict.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                         help=f"refuse larger images (default {MAX_PIXELS:,}; 0: no limit)")
    predict.add_argument("--max-bytes", type=int, default=MAX_BYTES,
                         help=f"refuse larger image files (default {MAX_BYTES:,}; 0: no limit)")
    predict.add_argument("--backbone-weights", help="DINOv3 backbone of a delta checkpoint (file, folder or hub id, "
                                                    "e.g. facebook/dinov3-vitl16-pretrain-lvd1689m)")

    exporting = commands.add_parser("export", help="write the network as an ONNX file (config in its metadata)")
    exporting.add_argument("--model", required=True, help="checkpoint file, HF folder, hub repo id or preset name")
    exporting.add_argument("--preset", help="architecture preset, when the source does not tell")
    exporting.add_argument("--backbone-weights", help="the pretrained backbone a delta checkpoint is relative to")
    exporting.add_argument("--out", type=Path, required=True, help="output .onnx file")
    exporting.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or higher; default 18)")
    exporting.add_argument("--batch", default="dynamic", help="'dynamic' (any batch size, the default) or a fixed N")
    exporting.add_argument("--no-check", action="store_true",
                        help="skip the comparison of ONNX Runtime's logits with PyTorch's after the export")
    return parser


def _label_maps(task: str, predictor, image) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(class_map, segment_map or None, printable lines) of one prediction."""
    config = predictor.config
    if task == "panoptic":
        result = predictor.panoptic(image)
        lines = [f"{s['id']:>4}  {config.class_name(s['category_id']):<28} {'thing' if s['isthing'] else 'stuff'}"
                 f"  score {s['score']:.3f}  area {s['area']}" for s in result.segments]
        return result.class_map, result.segment_map, lines
    if task == "instance":
        instances = [i for i in predictor.instance(image) if i["score"] >= INSTANCE_MIN_SCORE]
        height, width = instances[0]["mask"].shape if instances else np.asarray(image).shape[:2]
        class_map = np.full((height, width), -1, dtype=np.int32)
        segment_map = np.full((height, width), -1, dtype=np.int32)
        for number, instance in reversed(list(enumerate(instances))):  # best last, so it is drawn on top
            class_map[instance["mask"]] = instance["category_id"]
            segment_map[instance["mask"]] = number
        lines = [f"{n:>4}  {config.class_name(i['category_id']):<28} score {i['score']:.3f}  "
                 f"area {int(i['mask'].sum())}" for n, i in enumerate(instances)]
        return class_map, segment_map, lines
    class_map = predictor.semantic(image)
    ids, areas = np.unique(class_map, return_counts=True)
    lines = [f"{c:>4}  {config.class_name(int(c)):<28} area {a}"
             for c, a in sorted(zip(ids, areas, strict=True), key=lambda pair: -pair[1])]
    return class_map, None, lines


def predict(args: argparse.Namespace) -> int:
    import eomt
    from eomt.devices import check_precision, resolve_device
    from eomt.images import load_image

    device = resolve_device(args.device)
    check_precision(args.dtype, device)
    image = load_image(args.image, max_pixels=args.max_pixels or None, max_bytes=args.max_bytes or None)
    model = eomt.load_model(args.model, preset=args.preset, device=device, backbone_weights=args.backbone_weights)
    task = args.task or model.config.task
    predictor = eomt.Predictor(model, dtype=args.dtype)
    class_map, segment_map, lines = _label_maps(task, predictor, image)
    picture = render_panoptic(class_map, segment_map, np.asarray(model.config.colors(), dtype=np.uint8))
    atomic.write_png(args.out, picture)
    height, width = class_map.shape
    print(f"{args.image} ({width}x{height}), {task}, {len(lines)} {'classes' if task == 'semantic' else 'segments'}"
          f" -> {args.out}")
    print("\n".join(lines))
    return 0


def export(args: argparse.Namespace) -> int:
    """Writes the ONNX file, then checks it against the PyTorch model it came from."""
    import time

    import torch

    import eomt
    from eomt import onnx

    model = eomt.load_model(args.model, preset=args.preset, device="cpu", backbone_weights=args.backbone_weights)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{args.model}: already an ONNX model; export the PyTorch checkpoint it came from")
    started = time.perf_counter()
    path = onnx.export(model, args.out, opset=args.opset, batch=args.batch)
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.exists())
    print(f"{args.model} -> {path} ({size / 2**20:.1f} MiB, opset {args.opset}, batch {args.batch}, "
          f"{model.config.img_size}x{model.config.img_size} images, {time.perf_counter() - started:.1f} s)")
    if not args.no_check:
        batch = 2 if args.batch == "dynamic" else int(args.batch)
        images = torch.rand(batch, 3, model.config.img_size, model.config.img_size)
        with torch.inference_mode():
            expected, got = model(images), onnx.OnnxModel(path)(images)
        differences = [float((e - g).abs().max()) for e, g in zip(expected, got, strict=True)]
        print(f"ONNX Runtime vs PyTorch on a random batch of {batch}: max |difference| mask logits "
              f"{differences[0]:.2g}, class logits {differences[1]:.2g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return export(args) if args.command == "export" else predict(args)
    except ValueError as err:  # bad image, checkpoint (CheckpointError) or option: no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the output path: a folder, read-only, a full disk
        print(f"error: {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
