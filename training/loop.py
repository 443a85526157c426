"""One EoMT training run: model (from scratch or from a checkpoint), data, the optimisation loop with its
schedules, atomic checkpoints and resuming, and the validation PQ (panoptic) or mIoU (semantic) at the end.

    from training.loop import TrainOptions, train
    summary = train(TrainOptions(data="DIR", out="runs/x", steps=2000))
    summary = train(TrainOptions(data="DIR", out="runs/s", task="semantic"))

Run files in `out`: `checkpoint.pt` (everything needed to resume), `model.safetensors` (the network with its
config, what eomt.load_model reads), `log.jsonl` (losses and learning rate every `log_every` steps) and
`val_pq.json` (the final validation PQ) or, for a semantic run, `val_miou.json` (the final validation mIoU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import eomt
from eomt import atomic
from eomt.checkpoint import load_backbone_weights, read_backbone
from eomt.classes import ade20k_classes
from eomt.config import EoMTConfig
from eomt.devices import Ranks, autocast, check_precision, init_ranks, resolve_device
from eomt.modeling import EoMT
from eomt.presets import class_metadata
from metrics import pq
from metrics import semantic as semantic_metrics
from training.data import PanopticSamples, SemanticSamples, collate, epoch_batches
from training.losses import LossWeights, Targets, eomt_loss
from training.schedule import lr_factor, mask_probabilities, parameter_groups, set_lr

CHECKPOINT = "checkpoint.pt"
MODEL = "model.safetensors"
LOG = "log.jsonl"
VAL_PQ = "val_pq.json"
VAL_MIOU = "val_miou.json"
TRAIN_TASKS = ("panoptic", "semantic")
# Options that may change when a run is resumed; every other option must match the interrupted run.
RUNTIME_OPTIONS = {"device", "workers", "threads", "checkpoint_every", "log_every", "resume", "val_limit",
                   "progress"}


@dataclass
class TrainOptions:
    data: str  # ADE20K-format folder (the two zips, or extracted)
    out: str  # run folder
    task: str = "panoptic"  # or "semantic": per-class targets, shortest-side crops, mIoU validation
    # The network: a checkpoint / preset to start from, or a new one of this shape.
    init: str | None = None
    preset: str | None = None
    backbone_weights: str | None = None  # pretrained DINOv3: of a new network, or what a delta --init needs
    backbone: str = "vit_small_patch14_reg4_dinov2"
    depth: int = 6
    dim: int = 128
    heads: int = 4
    img_size: int = 128
    patch_size: int = 16
    num_queries: int = 30
    num_blocks: int = 3
    layer_scale_init: float | None = None  # None: the backbone's default (1e-5 for DINOv2)
    # The recipe.
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.8
    warmup_steps: int = 100
    poly_power: float = 0.9
    grad_clip: float = 1.0
    anneal_start: float = 0.1
    anneal_end: float = 0.7
    mask_size: int | None = None  # None: the resolution of the mask logits (4x the patch grid)
    scale_min: float = 1.0
    scale_max: float = 1.0
    flip: bool = True
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    seed: int = 0
    split: str = "training"
    val_split: str = "validation"
    # Runtime.
    device: str = "auto"
    dtype: str = "fp32"
    workers: int = 1
    threads: int | None = None
    checkpoint_every: int = 250
    log_every: int = 25
    val_limit: int | None = None  # 0: no validation
    resume: bool = False
    progress: bool = True

    def recipe(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_OPTIONS}


# ---------------------------------------------------------------------------------------------- processes

# --------------------------------------------------------------------------------------------------- model

def dataset_metadata() -> dict:
    """The class metadata of the training data (ADE20K format: its 150 classes)."""
    return class_metadata(ade20k_classes())


def build_model(options: TrainOptions, metadata: dict) -> EoMT:
    """A new EoMT of the options' shape, or a checkpoint's network with a fresh class head when its classes
    are not the data's (fine-tuning a published model on another label set)."""
    if options.init is None:
        kwargs = {"depth": options.depth, "embed_dim": options.dim, "num_heads": options.heads}
        if options.layer_scale_init is not None:
            kwargs["init_values"] = options.layer_scale_init
        config = EoMTConfig(backbone=options.backbone, img_size=options.img_size, num_queries=options.num_queries,
                            num_blocks=options.num_blocks, patch_size=options.patch_size, backbone_kwargs=kwargs,
                            task=options.task, **metadata)
        model = EoMT(config)
        if options.backbone_weights is not None:  # the official recipe: Meta's pretrained DINOv3, new heads
            load_backbone_weights(model, options.backbone_weights)
        return model
    backbone = None if options.backbone_weights is None else read_backbone(options.backbone_weights)
    loaded = eomt.load_model(options.init, preset=options.preset, load_class_head=False, backbone_weights=backbone)
    same_classes = (loaded.config.num_classes == metadata["num_classes"]
                    and loaded.config.class_names == tuple(metadata["class_names"]))
    if same_classes:  # the class head is meaningful for this data: keep it
        loaded = eomt.load_model(options.init, preset=options.preset, backbone_weights=backbone)
    config = dataclasses.replace(loaded.config, task=options.task, **metadata)
    model = EoMT(config)
    state = {k: v for k, v in loaded.state_dict().items() if same_classes or not k.startswith("class_head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("class_head.") for k in missing):
        raise ValueError(f"{options.init}: weights do not fit (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        model.attn_mask_probs.fill_(1.0)  # training starts with masked attention again
    return model


# --------------------------------------------------------------------------------------------- checkpoints

def save_run(out: Path, model: EoMT, optimizer, scaler, step: int, options: TrainOptions) -> None:
    """Writes checkpoint.pt (resumable state) and model.safetensors, each atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None, "step": step,
             "options": options.recipe(), "config": model.config.to_dict(),
             "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    atomic.write_file(out / CHECKPOINT, lambda tmp: torch.save(state, tmp))
    atomic.write_file(out / MODEL, lambda tmp: eomt.save_model(model, tmp))


RUN_KEYS = {"model", "optimizer", "scaler", "step", "options", "config", "rng", "cuda_rng"}


def load_run(out: Path, options: TrainOptions) -> dict:
    """The state of an interrupted run, after checking it was made with the same recipe. Read as tensors and
    plain data only (weights_only), so a crafted checkpoint.pt cannot run code."""
    path = out / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickles of other objects; a truncated file fails to unzip
        raise ValueError(f"{path}: not a training checkpoint this program can resume (only tensors and plain data "
                         f"are read): {type(err).__name__}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or not RUN_KEYS <= state.keys():
        raise ValueError(f"{path}: not a training checkpoint of python -m training (expected the keys "
                         f"{sorted(RUN_KEYS)})")
    saved = {"task": "panoptic", **state["options"]}  # runs from before the task option were panoptic
    current = options.recipe()
    changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if changed:
        raise ValueError(f"{out}: --resume with other options than the interrupted run: " + ", ".join(
            f"{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items()))
    return state


# -------------------------------------------------------------------------------------------------- validation

def evaluate(model: EoMT, dataset, limit: int | None = None, dtype: str = "fp32", progress: bool = False) -> dict:
    """Panoptic quality (panopticapi's definition, metrics.pq) of `model` on the first `limit` images of an
    ADE20K-format split: {"All", "Things", "Stuff", "per_class"} with per_class keyed by class name."""
    was_training = model.training
    predictor = eomt.Predictor(model.eval(), dtype=dtype)
    counts = []
    indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    for index in tqdm(indices, desc="validation", unit="img", disable=not progress, dynamic_ncols=True):
        sample = dataset[index]
        pred_map, pred_segments = predictor.panoptic(sample.image).coco()
        counts.append(pq.image_counts(sample.segment_map, sample.segments, pred_map, pred_segments))
    model.train(was_training)
    config = model.config
    categories = {i: i not in set(config.stuff_classes) for i in range(config.num_classes)}
    summary = pq.pq_summary(pq.sum_counts(counts), categories)
    summary["per_class"] = {config.class_name(k): v for k, v in summary["per_class"].items()}
    summary["images"] = len(indices)
    return summary


def evaluate_semantic(model: EoMT, dataset, limit: int | None = None, dtype: str = "fp32",
                      progress: bool = False) -> dict:
    """mIoU of `model` (Predictor.semantic, sliding windows) on the first `limit` images of a split with semantic
    ground truth, from pixel counts summed over the images (metrics.semantic): {"miou", "fwiou", "aacc", "macc",
    "n_classes", "per_class", "images"} with per_class keyed by class name, for the classes with any pixel."""
    was_training = model.training
    predictor = eomt.Predictor(model.eval(), dtype=dtype)
    num_classes = model.config.num_classes
    counts = []
    indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    for index in tqdm(indices, desc="validation", unit="img", disable=not progress, dynamic_ncols=True):
        prediction = predictor.semantic(dataset.read_image(index))
        counts.append(semantic_metrics.image_counts(dataset.semantic(index), prediction, num_classes))
    model.train(was_training)
    total = semantic_metrics.sum_counts(counts, num_classes)
    summary = semantic_metrics.summary(total, class_ids=np.flatnonzero(total.union).tolist())
    summary["per_class"] = {model.config.class_name(k): v for k, v in summary["per_class"].items()}
    summary["images"] = len(indices)
    return summary


def format_summary(summary: dict) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    if "miou" in summary:
        return (f"mIoU {pct(summary['miou'])} fwIoU {pct(summary['fwiou'])} aAcc {pct(summary['aacc'])} "
                f"mAcc {pct(summary['macc'])} (n={summary['n_classes']})")
    return "  ".join(f"{group} PQ {pct(summary[group]['pq'])} SQ {pct(summary[group]['sq'])} "
                     f"RQ {pct(summary[group]['rq'])} (n={summary[group]['n']})"
                     for group in ("All", "Things", "Stuff"))


# ------------------------------------------------------------------------------------------------------ train

def train(options: TrainOptions) -> dict:
    """Runs (or resumes) training. Returns {"model": path of model.safetensors, "network": the trained EoMT
    (eval mode), "steps": steps run now, "seconds": their time, "val": validation PQ (mIoU for a semantic run)
    summary or None}."""
    from segdata.ade20k import ADE20K

    if options.threads:
        torch.set_num_threads(options.threads)
    procs = init_ranks(options.device)
    try:
        device = torch.device(resolve_device(options.device, procs.local_rank))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _train(options, procs, device, ADE20K)
    finally:
        procs.close()


def _check(options: TrainOptions, procs: Ranks, device: torch.device) -> None:
    if options.task not in TRAIN_TASKS:
        raise ValueError(f"--task must be one of {TRAIN_TASKS}, got {options.task!r}")
    if options.batch_size % procs.world:
        raise ValueError(f"--batch-size {options.batch_size} must be a multiple of the {procs.world} processes")
    if options.steps < 1 or options.warmup_steps < 0 or not 0 <= options.anneal_start <= options.anneal_end <= 1:
        raise ValueError("need steps >= 1, warmup_steps >= 0 and 0 <= anneal_start <= anneal_end <= 1")
    check_precision(options.dtype, device)


@dataclass
class _Run:
    """What the training loop works on."""

    options: TrainOptions
    procs: Ranks
    device: torch.device
    out: Path
    model: EoMT
    network: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    start_step: int


def _train(options: TrainOptions, procs: Ranks, device: torch.device, reader) -> dict:
    _check(options, procs, device)
    out = Path(options.out)
    if (out / CHECKPOINT).exists() and not options.resume:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    resumed = load_run(out, options) if options.resume and (out / CHECKPOINT).exists() else None
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(options.seed)
    np.random.seed(options.seed)
    dataset = reader(options.data, options.split)
    if len(dataset) < options.batch_size:
        raise ValueError(f"{options.data}: {len(dataset)} {options.split} images, fewer than one batch of "
                         f"{options.batch_size}")
    run = _setup(options, procs, device, out, resumed)
    del resumed
    seconds = _loop(run, dataset)
    with torch.no_grad():
        run.model.attn_mask_probs.zero_()  # annealed: the saved network runs as inference does
    if procs.is_main:
        save_run(out, run.model, run.optimizer, run.scaler, options.steps, options)
    summary = _validate(run, reader) if procs.is_main and options.val_limit != 0 else None
    return {"model": str(out / MODEL), "network": run.model.eval(), "steps": options.steps - run.start_step,
            "seconds": seconds, "val": summary}


def _setup(options: TrainOptions, procs: Ranks, device: torch.device, out: Path, resumed: dict | None) -> _Run:
    """The model (new, from --init, or resumed), its optimiser and loss scaler, and the DDP wrapper."""
    if resumed is None:
        model = build_model(options, dataset_metadata())
    else:
        model = EoMT(EoMTConfig.from_dict(resumed["config"]))
        model.load_state_dict(resumed["model"])
    model.to(device).train()
    # fused: one kernel for all parameters; the per-tensor loop costs a tenth of a small model's step on CPU.
    optimizer = torch.optim.AdamW(parameter_groups(model, options.lr, options.weight_decay, options.layer_decay),
                                  lr=options.lr, weight_decay=options.weight_decay, fused=True)
    scaler = torch.amp.GradScaler("cuda") if options.dtype == "fp16" else None
    start_step = 0
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if scaler is not None and resumed["scaler"] is not None:
            scaler.load_state_dict(resumed["scaler"])
        torch.set_rng_state(resumed["rng"])
        if resumed.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(resumed["cuda_rng"])
        start_step = resumed["step"]
    network = model
    if procs.world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return _Run(options, procs, device, out, model, network, optimizer, scaler, start_step)


def _batches(run: _Run, dataset):
    """The batches from the run's first step on, epoch after epoch; a resumed run continues mid-epoch."""
    options, procs = run.options, run.procs
    scale_range = (options.scale_min, options.scale_max)
    if options.task == "semantic":
        samples = SemanticSamples(dataset, run.model.config.img_size, run.model.config.num_classes, scale_range,
                                  options.flip)
    else:
        samples = PanopticSamples(dataset, run.model.config.img_size, scale_range, options.flip)
    epoch, skip = divmod(run.start_step, len(dataset) // options.batch_size)
    while True:
        batches = epoch_batches(len(dataset), options.batch_size, options.seed, epoch, procs.rank,
                                procs.world)[skip:]
        # Its own generator: creating a loader draws a seed, which must not shift the global RNG stream
        # (masked attention draws from it) between a whole run and a resumed one.
        loader = DataLoader(samples, batch_sampler=batches, num_workers=options.workers, collate_fn=collate,
                            pin_memory=run.device.type == "cuda", generator=torch.Generator().manual_seed(epoch))
        yield from loader
        epoch, skip = epoch + 1, 0


def _step(run: _Run, step: int, images: torch.Tensor, targets: list[Targets]) -> tuple[dict, list[float], float]:
    """One optimisation step: schedules, forward under autocast, the loss on every block, backward, update.
    Returns the loss parts, the masked-attention probabilities and the learning-rate factor."""
    options, device = run.options, run.device
    factor = lr_factor(step, options.steps, options.warmup_steps, options.poly_power)
    set_lr(run.optimizer, factor)
    probabilities = mask_probabilities(step, options.steps, run.model.config.num_blocks, options.anneal_start,
                                       options.anneal_end, options.poly_power)
    with torch.no_grad():
        run.model.attn_mask_probs.copy_(torch.tensor(probabilities))
    images = images.to(device, non_blocking=True).float().div_(255)
    targets = [t.to(device) for t in targets]
    num_masks = torch.tensor(float(sum(len(t.labels) for t in targets)), device=device)
    run.procs.all_reduce(num_masks)
    num_masks = max(1.0, float(num_masks) / run.procs.world)

    with autocast(device, options.dtype):
        mask_logits, class_logits = run.network(images, return_intermediate=True)
    weights = LossWeights(options.class_weight, options.mask_weight, options.dice_weight, options.no_object_weight)
    mask_size = (options.mask_size, options.mask_size) if options.mask_size else None
    loss, parts = eomt_loss(mask_logits, class_logits, targets, num_masks, weights, mask_size)
    if not math.isfinite(parts["total"]):
        raise FloatingPointError(f"step {step}: the loss is {parts['total']}; lower --lr or use fp32")
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    if options.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), options.grad_clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    return parts, probabilities, factor


def _loop(run: _Run, dataset) -> float:
    """Runs the steps from the run's start to options.steps with progress, log lines and periodic checkpoints;
    returns the seconds it took."""
    options, procs = run.options, run.procs
    log_file = open(run.out / LOG, "a") if procs.is_main else None  # noqa: SIM115 - closed in finally
    bar = tqdm(total=options.steps, initial=run.start_step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (options.progress and procs.is_main))
    smoothed, window_start, window_images = None, time.perf_counter(), 0
    started = time.perf_counter()
    try:
        for step, (images, targets) in zip(range(run.start_step, options.steps), _batches(run, dataset),
                                           strict=False):
            parts, probabilities, factor = _step(run, step, images, targets)
            smoothed = parts["total"] if smoothed is None else 0.95 * smoothed + 0.05 * parts["total"]
            window_images += len(images) * procs.world
            now = time.perf_counter()
            if now - window_start > 2.0 or step + 1 == options.steps:
                bar.set_postfix(loss=f"{smoothed:.3f}", img_s=f"{window_images / (now - window_start):.1f}",
                                lr=f"{options.lr * factor:.2e}", pmask=f"{np.mean(probabilities):.2f}",
                                refresh=False)
                window_start, window_images = now, 0
            bar.update(1)
            done = step + 1
            if log_file is not None and (done % options.log_every == 0 or done == options.steps):
                log_file.write(json.dumps({"step": done, "lr": options.lr * factor, "mask_probs": probabilities,
                                           "loss": smoothed, **parts,
                                           "seconds": round(time.perf_counter() - started, 1)}) + "\n")
                log_file.flush()
            if procs.is_main and done % options.checkpoint_every == 0 and done < options.steps:
                save_run(run.out, run.model, run.optimizer, run.scaler, done, options)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    return time.perf_counter() - started


def _validate(run: _Run, reader) -> dict | None:
    """Panoptic quality on the validation split, written to val_pq.json (semantic runs: mIoU, val_miou.json);
    None when there is no such split."""
    options = run.options
    try:
        val_set = reader(options.data, options.val_split)
    except (ValueError, OSError) as err:
        print(f"no validation ({err})")
        return None
    semantic = options.task == "semantic"
    summary = (evaluate_semantic if semantic else evaluate)(run.model, val_set, options.val_limit, options.dtype,
                                                            options.progress)
    (run.out / (VAL_MIOU if semantic else VAL_PQ)).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"validation ({summary['images']} images): {format_summary(summary)}")
    return summary
