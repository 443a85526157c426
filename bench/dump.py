"""End-to-end speed of predict_dump.py against the bare model forward on the same images and model.

    python bench/dump.py [--images 24] [--backbone vit_small_patch14_reg4_dinov2] [--img-size 640] [--device cpu]

Generates an ADE20K-format dataset of 683x512 images, builds a random (sharpened, so that it predicts segments)
model, times the bare forward over the pre-processed images, then a full dump of the same images, and prints both
in images/s with the overhead ratio (target: the dump within 15% of the bare forward). Then the same dump with the
threshold sweep (`--sweep`, default score=0.5:0.95:0.05, 10 settings) and its extra cost per image and setting.
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
from eomt.transforms import resize_and_pad  # noqa: E402
from segdata.ade20k import ADE20K  # noqa: E402
from synthetic.ade20k import write_toy_ade20k
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


def main() -> None:
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
    parser.add_argument("--sweep", nargs="+", default=["score=0.5:0.95:0.05"], metavar="KNOB=VALUES",
                        help="the grid of the sweep run (predict_dump.py --sweep); 'none' to skip it")
    args = parser.parse_args()

    ade = eomt.PRESETS["ade20k_panoptic_eomt_large_640"]
    num_blocks = 4 if "large" in args.backbone else 3
    config = eomt.EoMTConfig(backbone=args.backbone, img_size=args.img_size, num_classes=150,
                             num_queries=args.queries, num_blocks=num_blocks, task="panoptic",
                             class_names=ade.class_names, stuff_classes=ade.stuff_classes,
                             class_colors=ade.class_colors)
    model = confident_model(config, seed=0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_toy_ade20k(tmp / "ade", args.images, size=(512, 683))
        keep_realistic_number_of_queries(model, ADE20K(data).read_image(0), args.img_size, args.kept)
        checkpoint = tmp / "model.safetensors"
        eomt.save_model(model, checkpoint)

        dataset = ADE20K(data)
        batches = []
        for start in range(0, len(dataset), args.batch_size):
            pixels = [resize_and_pad(dataset.read_image(i), args.img_size)[0]
                      for i in range(start, min(start + args.batch_size, len(dataset)))]
            batches.append(torch.stack(pixels))
        predictor = eomt.Predictor(eomt.load_model(checkpoint, device=args.device), dtype=args.dtype)
        predictor.forward(batches[0])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            predictor.forward(batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        bare = args.images / (time.perf_counter() - start)

        common = ["--data", str(data), "--model", f"bench={checkpoint}", "--device", args.device, "--dtype",
                  args.dtype, "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
        start = time.perf_counter()
        status = predict_dump.main([*common, "--out", str(tmp / "out")])
        dump_seconds = time.perf_counter() - start
        dump = args.images / dump_seconds
        assert status == 0
        annotations = json.loads((tmp / "out" / "panoptic" / "bench.json").read_text())["annotations"]
        segments = sum(len(a["segments_info"]) for a in annotations) / len(annotations)
        sweep = None
        if args.sweep != ["none"]:
            start = time.perf_counter()
            assert predict_dump.main([*common, "--out", str(tmp / "swept"), "--sweep", *args.sweep]) == 0
            sweep_seconds = time.perf_counter() - start
            n_settings = len(json.loads((tmp / "swept" / "sweep.json").read_text())["models"]["bench"]["results"])
            sweep = (sweep_seconds, n_settings)

    print(f"\n{args.backbone} at {args.img_size}, {args.queries} queries, {args.images} images of 683x512, "
          f"device {args.device}, {args.dtype}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"about {args.kept} kept queries, {segments:.1f} segments per image")
    print(f"bare forward        {bare:8.2f} images/s")
    print(f"predict_dump (all)  {dump:8.2f} images/s   (model load, data files, metrics and aggregates included)")
    print(f"dump / bare         {dump / bare:8.3f}   (overhead {100 * (bare / dump - 1):.1f}% of the forward time; "
          "target <= 15%)")
    if sweep is not None:
        sweep_seconds, n_settings = sweep
        extra = (sweep_seconds - dump_seconds) / args.images
        print(f"dump with --sweep   {args.images / sweep_seconds:8.2f} images/s   ({' '.join(args.sweep)}: "
              f"{n_settings} settings)")
        print(f"sweep extra cost    {1000 * extra:8.1f} ms per image, {1000 * extra / n_settings:.1f} ms per image "
              f"and setting ({100 * extra / (1 / bare) / n_settings:.1f}% of a bare forward per setting)")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
