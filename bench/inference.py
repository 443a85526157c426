"""Inference speed and memory: ours (eomt.Predictor) against transformers (EomtForUniversalSegmentation +
EomtImageProcessorPil), same random weights, same photo, end to end (pre-processing, forward, panoptic merge).

    python bench/inference.py                       # ViT-S 640 on a 683x512 photo, 2 threads, CPU
    python bench/inference.py --backbone large      # ViT-L 640 (slow on CPU)
    python bench/inference.py --device cuda --dtype bf16 --batch-size 8 --ours-only   # GPU throughput
    python bench/inference.py --family dinov3       # EoMT on DINOv3 ViT-S (EomtDinov3ForUniversalSegmentation)
    python bench/inference.py --family both         # DINOv2 then DINOv3, and their ratio
    python bench/inference.py --backend onnxruntime  # ours exported to ONNX (eomt.onnx), run by ONNX Runtime
    python bench/inference.py --backend onnxruntime --ort-variants --ours-only   # ONNX Runtime session options

With --backend onnxruntime, "ours" is the same predictor around an ONNX Runtime session, and the forward of
ours in PyTorch is timed beside it (ratio PyTorch / ONNX Runtime). --ort-variants adds the forward under other
session options: thread spinning on, graph optimisation levels, one thread.

The class head is sharpened so that many queries pass the 0.8 score threshold, the regime in which
transformers' post-processing (every query upsampled to full size) is slowest. The memory figure is the peak
resident memory added by the panoptic post-processing of a 2048x2048 image with all 200 queries kept,
measured in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import eomt  # noqa: E402
from eomt.config import PRECISIONS  # noqa: E402
from eomt.transforms import resize_and_pad  # noqa: E402

PHOTO = ROOT / "tests" / "data" / "ade20k_sample" / "images" / "ADE_val_00000001.jpg"
SIZES = {"small": (384, 12, 6, 3), "base": (768, 12, 12, 3), "large": (1024, 24, 16, 4)}
NUM_CLASSES = 133
STUFF = list(range(80, 133))


def random_hf_model(backbone: str, img_size: int, family: str = "dinov2"):
    from transformers import (
        EomtConfig,
        EomtDinov3Config,
        EomtDinov3ForUniversalSegmentation,
        EomtForUniversalSegmentation,
    )

    hidden, layers, heads, num_blocks = SIZES[backbone]
    torch.manual_seed(0)
    fields = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_blocks=num_blocks,
                  num_labels=NUM_CLASSES, num_queries=200, image_size=img_size)
    if family == "dinov3":  # DINOv3's LayerNorm eps (transformers defaults to 1e-6)
        config = EomtDinov3Config(**fields, intermediate_size=4 * hidden, layer_norm_eps=1e-5)
        model = EomtDinov3ForUniversalSegmentation(config).eval()
    else:
        model = EomtForUniversalSegmentation(EomtConfig(**fields)).eval()
    with torch.no_grad():
        model.attn_mask_probs.zero_()  # as in the released checkpoints
        model.class_predictor.weight.mul_(60.0)  # many confident queries
        for layer in model.layers:  # the init's 1.0 layer scales would blow up activations of random weights
            layer.layer_scale1.lambda1.fill_(0.1)
            layer.layer_scale2.lambda1.fill_(0.1)
    return model


def interleaved(functions: dict, runs: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn so that load from other processes on
    a shared machine hits all of them alike."""
    for function in functions.values():
        function()  # warm-up
    seconds = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def speed(args, family: str) -> dict[str, float]:
    """Prints and returns the end-to-end images/s of ours (and transformers') for one backbone family."""
    from PIL import Image
    from transformers import EomtImageProcessorPil

    hf_model = random_hf_model(args.backbone, args.img_size, family)
    with tempfile.TemporaryDirectory() as folder:
        hf_model.save_pretrained(folder)
        model = eomt.load_model(folder, device=args.device)
        sessions = onnx_sessions(model, Path(folder), args) if args.backend == "onnxruntime" else {}
    torch_predictor = eomt.Predictor(model, stuff_classes=STUFF, dtype=args.dtype)
    predictor = eomt.Predictor(sessions["default"], stuff_classes=STUFF) if sessions else torch_predictor
    photo = Image.open(args.image).convert("RGB")
    images = [photo] * args.batch_size
    print(f"{family} {args.backbone} {args.img_size}, {args.device} {args.dtype}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, photo {photo.width}x{photo.height}, median of {args.runs} runs, "
          f"ours on {args.backend}, load average before {os.getloadavg()[0]:.1f}")

    prepared = [resize_and_pad(image, args.img_size) for image in images]
    batch = torch.stack([pixels for pixels, _ in prepared])
    resized = [size for _, size in prepared]
    original = [(photo.height, photo.width)] * args.batch_size
    mask_logits, class_logits = predictor.forward(batch)
    functions = {
        "ours forward": lambda: predictor.forward(batch),
        "ours post": lambda: predictor.panoptic_from_logits(mask_logits, class_logits, resized, original),
        "ours": lambda: predictor.panoptic_batch(images),
    }
    if sessions:
        functions["ours pytorch forward"] = lambda: torch_predictor.forward(batch)
        for name, session in sessions.items():
            if name != "default":
                functions[f"onnxruntime {name} forward"] = (lambda s: lambda: s(batch.float().div(255)))(session)
    if not args.ours_only:
        processor = EomtImageProcessorPil(size={"shortest_edge": args.img_size, "longest_edge": args.img_size})
        hf_model = hf_model.to(args.device)
        sizes = [(photo.height, photo.width)] * args.batch_size

        def hf_forward(inputs):
            with torch.inference_mode():
                return hf_model(pixel_values=inputs["pixel_values"].to(args.device))

        def hf_post(outputs):
            with torch.inference_mode():
                return processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes,
                                                                    stuff_classes=STUFF)

        inputs = processor(images=images, do_pad=True, return_tensors="pt")
        outputs = hf_forward(inputs)
        functions.update({
            "transformers forward": lambda: hf_forward(inputs),
            "transformers post": lambda: hf_post(outputs),
            "transformers": lambda: hf_post(hf_forward(processor(images=images, do_pad=True, return_tensors="pt"))),
        })
    median = interleaved(functions, args.runs)

    kept = int(((class_logits.argmax(-1) != NUM_CLASSES) & (class_logits.softmax(-1).max(-1).values > 0.8)).sum())
    print(f"{kept / args.batch_size:.0f} of 200 queries kept per image")
    for who in ("ours", "transformers")[:1 if args.ours_only else 2]:
        print(f"{who + ':':<13} forward {median[who + ' forward']:.3f} s, post-processing {median[who + ' post']:.3f} s, "
              f"end to end {median[who]:.3f} s per batch = {args.batch_size / median[who]:.2f} images/s")
    if not args.ours_only:
        print(f"ratio (ours / transformers images/s): {median['transformers'] / median['ours']:.2f}x end to end, "
              f"{median['transformers post'] / median['ours post']:.2f}x post-processing")
    if sessions:
        print(f"forward, ours in PyTorch {median['ours pytorch forward']:.3f} s vs ONNX Runtime "
              f"{median['ours forward']:.3f} s (threads {args.threads}, spinning {'on' if args.spinning else 'off'}, "
              f"optimization all, opset {args.opset}): "
              f"{median['ours pytorch forward'] / median['ours forward']:.2f}x")
        for name in sessions:
            if name != "default":
                seconds = median[f"onnxruntime {name} forward"]
                print(f"  ONNX Runtime forward, {name}: {seconds:.3f} s "
                      f"({median['ours pytorch forward'] / seconds:.2f}x PyTorch)")
    print(f"load average after {os.getloadavg()[0]:.1f}")

    return {who: args.batch_size / median[who] for who in ("ours", "transformers") if who in median}

def onnx_sessions(model, folder: Path, args) -> dict:
    """ONNX Runtime runners of `model` exported into `folder`: "default" (eomt.onnx's defaults, threads =
    --threads, spinning as --spinning), and with --ort-variants other session options to compare."""
    from eomt.onnx import OnnxModel, export

    path = export(model, folder / "model.onnx", opset=args.opset)

    def runner(**options):
        return OnnxModel(path, device=args.device, **{"threads": args.threads, "spinning": args.spinning, **options})

    sessions = {"default": runner()}
    if args.ort_variants:
        sessions.update({
            f"spinning {'off' if args.spinning else 'on'}": runner(spinning=not args.spinning),
            "optimization extended": runner(optimization="extended"),
            "optimization basic": runner(optimization="basic"),
            "1 thread": runner(threads=1),
        })
    return sessions


MEMORY_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
{setup}
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
mask_logits = torch.randn(1, 200, 160, 160)
class_logits = torch.zeros(1, 200, 134)
class_logits[0, torch.arange(200), torch.arange(200) % 133] = 20.0  # all 200 queries confident
before = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # restart the peak (VmHWM) from here
run()
print(rss('VmHWM') - before)
"""
OURS_SETUP = """
from eomt.postprocess import panoptic_segmentation
def run():
    with torch.inference_mode():
        panoptic_segmentation(mask_logits[0], class_logits[0], 640, (640, 640), (2048, 2048), range(80, 133))
"""
HF_SETUP = """
from transformers import EomtImageProcessorPil
class Outputs: pass
def run():
    out = Outputs(); out.masks_queries_logits = mask_logits; out.class_queries_logits = class_logits
    with torch.inference_mode():
        EomtImageProcessorPil(size={'shortest_edge': 640, 'longest_edge': 640}).post_process_panoptic_segmentation(
            out, target_sizes=[(2048, 2048)], stuff_classes=list(range(80, 133)))
"""


def peak_memory(setup: str, threads: int) -> float:
    code = MEMORY_CHILD.format(root=str(ROOT), threads=threads, setup=setup)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="small", choices=sorted(SIZES))
    parser.add_argument("--family", default="dinov2", choices=["dinov2", "dinov3", "both"])
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--ours-only", action="store_true", help="skip transformers (e.g. for GPU throughput)")
    parser.add_argument("--backend", default="pytorch", choices=["pytorch", "onnxruntime"],
                        help="run ours in PyTorch or exported to ONNX and run by ONNX Runtime")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset of the export (--backend onnxruntime)")
    parser.add_argument("--spinning", action="store_true", help="let ONNX Runtime's idle threads spin")
    parser.add_argument("--ort-variants", action="store_true",
                        help="also time ONNX Runtime's forward under other session options")
    parser.add_argument("--hf-memory", action="store_true",
                        help="also measure transformers' post-processing memory (needs ~10 GB)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    families = ["dinov2", "dinov3"] if args.family == "both" else [args.family]
    rates = {family: speed(args, family) for family in families}
    if len(rates) == 2:
        print("DINOv3 / DINOv2 images/s: " + ", ".join(
            f"{who} {rates['dinov3'][who] / rates['dinov2'][who]:.2f}x" for who in rates["dinov2"]))
    if args.device == "cpu":
        print(f"peak memory of panoptic post-processing, 2048x2048, 200 queries kept: "
              f"ours {peak_memory(OURS_SETUP, args.threads):.2f} GB", end="")
        if args.hf_memory:
            print(f", transformers {peak_memory(HF_SETUP, args.threads):.2f} GB", end="")
        print()


if __name__ == "__main__":
    main()
