"""Trains an EoMT model for panoptic or semantic segmentation on ADE20K-format data (the two zips, or extracted
folders).

    python -m training --data DIR --out RUN [--depth 6 --dim 128 --heads 4 --img-size 128 ...] [--steps 2000]
    python -m training --task semantic --data DIR --out RUN ...
    python -m training --data DIR --out RUN --init tue-mps/ade20k_panoptic_eomt_large_640 --lr 1e-4
    python -m training --data DIR --out RUN --init tue-mps/coco_panoptic_eomt_large_640_dinov3 \
        --backbone-weights facebook/dinov3-vitl16-pretrain-lvd1689m      (a delta checkpoint and its backbone)
    python -m training --data DIR --out RUN --backbone vit_small_patch16_dinov3_qkvb --depth 12 --dim 384 \
        --heads 6 --img-size 640 --backbone-weights facebook/dinov3-vits16-pretrain-lvd1689m  (Meta's DINOv3, new heads)
    torchrun --nproc_per_node 4 -m training --data DIR --out RUN --device cuda --dtype bf16 ...
    python -m training ... --resume            (continue an interrupted run from RUN/checkpoint.pt)

Writes RUN/model.safetensors (load it with eomt.load_model or give it to predict_dump.py), RUN/checkpoint.pt,
RUN/log.jsonl and RUN/val_pq.json (panoptic quality on the validation split at the end; a semantic run writes
RUN/val_miou.json, the mIoU of sliding-window inference).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from training.loop import TRAIN_TASKS, TrainOptions

HELP = {
    "data": "ADE20K-format folder: ADEChallengeData2016.zip + annotations_instance.zip, or extracted",
    "out": "run folder (checkpoints, log, final model)",
    "task": "panoptic (one mask per segment) or semantic (one mask per class present, ignored pixels left out, "
            "shortest side = input size and random crops, validation mIoU); the saved model's config says it",
    "init": "start from this checkpoint (file, folder, hub id or preset name) instead of a new network; its "
            "class head is replaced when its classes are not the data's",
    "preset": "architecture preset of --init, when the checkpoint does not tell",
    "backbone_weights": "pretrained DINOv3 backbone (file, folder or hub id such as "
                        "facebook/dinov3-vits16-pretrain-lvd1689m): the start of a new network's backbone, or the "
                        "backbone a delta --init checkpoint (the published *_dinov3 models) is relative to",
    "backbone": "ViT of a new network: a timm DINOv2 with registers (vit_small_patch14_reg4_dinov2, ...) or a "
                "DINOv3 (vit_{small,base,large}_patch16_dinov3_qkvb)",
    "depth": "ViT blocks of a new network",
    "dim": "token width of a new network",
    "heads": "attention heads of a new network",
    "img_size": "input size of a new network (square)",
    "patch_size": "patch size of a new network",
    "num_queries": "queries of a new network",
    "num_blocks": "how many of the last blocks process the queries (new network)",
    "layer_scale_init": "initial LayerScale of a new network (default: the backbone's, 1e-5 for DINOv2)",
    "steps": "optimisation steps",
    "batch_size": "images per step, over all processes",
    "lr": "peak learning rate (AdamW) of the heads and the last block",
    "weight_decay": "AdamW weight decay (not on biases, norms, layer scales, tokens)",
    "layer_decay": "layer-wise learning-rate decay per ViT block, going down from the heads",
    "warmup_steps": "linear warmup steps",
    "poly_power": "power of the polynomial decay of the learning rate and of the mask annealing",
    "grad_clip": "clip the gradient norm to this (0: no clipping)",
    "anneal_start": "fraction of training where masked attention starts annealing from 1 (first query block)",
    "anneal_end": "fraction of training where masked attention reaches 0 (last query block)",
    "mask_size": "resolution of the mask losses (default: that of the mask logits)",
    "scale_min": "smallest random scale of the images (1 = longest side fits the input; semantic: shortest side)",
    "scale_max": "largest random scale (above 1 the image is randomly cropped)",
    "flip": "random horizontal flips",
    "class_weight": "weight of the class cross-entropy (and of its matching cost)",
    "mask_weight": "weight of the mask BCE (and of its matching cost)",
    "dice_weight": "weight of the dice loss (and of its matching cost)",
    "no_object_weight": "cross-entropy weight of the no-object class",
    "seed": "seed of the initialisation, the data order and the augmentation",
    "split": "training split",
    "val_split": "validation split (PQ or mIoU at the end)",
    "device": "auto, cpu, cuda or cuda:N",
    "dtype": "fp32, or bf16/fp16 autocast (fp16 on CUDA only, with loss scaling)",
    "workers": "DataLoader worker processes",
    "threads": "torch CPU threads (default: torch's choice)",
    "checkpoint_every": "save checkpoint.pt and model.safetensors every N steps (and at the end)",
    "log_every": "append losses to log.jsonl every N steps",
    "val_limit": "validate on the first N images only (0: no validation)",
    "resume": "continue the run in --out from its checkpoint",
    "progress": "show progress bars",
}


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    for field in dataclasses.fields(TrainOptions):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=HELP[field.name])
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(field.type), str)
        choices = TRAIN_TASKS if field.name == "task" else None
        parser.add_argument(flag, type=kind, default=default, required=required, choices=choices,
                            help=HELP[field.name])
    return TrainOptions(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    from training.loop import train

    try:
        train(options)
    except (ValueError, FileNotFoundError) as err:
        print(f"training: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the run folder: read-only, a full disk, a file where a folder should be
        path = err.filename2 or err.filename
        print(f"training: {path}: {err.strerror}" if path and err.strerror else f"training: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
