"""The model zoo: one EoMTConfig per published checkpoint, keyed by its Hugging Face repo name (tue-mps/<name>),
and the backbone sizes alone (BACKBONE_PRESETS) for configs of one's own."""

from __future__ import annotations

from eomt.classes import (
    ClassInfo,
    ade20k_classes,
    cityscapes_classes,
    coco_instance_classes,
    coco_panoptic_classes,
)
from eomt.config import EoMTConfig

HUB_ORGANISATION = "tue-mps"

# size -> (timm backbone, num_blocks); giant's timm definition brings its packed SwiGLU MLP.
BACKBONES = {
    "small": ("vit_small_patch14_reg4_dinov2", 3),
    "base": ("vit_base_patch14_reg4_dinov2", 3),
    "large": ("vit_large_patch14_reg4_dinov2", 4),
    "giant": ("vit_giant_patch14_reg4_dinov2", 5),
}
DINOV3_BACKBONES = {
    "small": ("vit_small_patch16_dinov3_qkvb", 3),
    "base": ("vit_base_patch16_dinov3_qkvb", 3),
    "large": ("vit_large_patch16_dinov3_qkvb", 4),
}
# The pretrained DINOv3 weights (gated, DINOv3 license) each DINOv3 backbone of the zoo was trained from; the
# published DINOv3 EoMT files store their backbone as the difference from these.
DINOV3_PRETRAINED = {
    "vit_small_patch16_dinov3_qkvb": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "vit_base_patch16_dinov3_qkvb": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "vit_large_patch16_dinov3_qkvb": "facebook/dinov3-vitl16-pretrain-lvd1689m",
}

# "<family>_<size>" -> the architecture fields of that backbone as the zoo uses it, for EoMTConfig(**preset,
# img_size=..., num_classes=...): a model of one's own on a published backbone.
BACKBONE_PRESETS: dict[str, dict] = {
    f"{family}_{size}": {"backbone": backbone, "num_blocks": num_blocks, "patch_size": 16}
    for family, table in (("dinov2", BACKBONES), ("dinov3", DINOV3_BACKBONES))
    for size, (backbone, num_blocks) in table.items()
}

DATASETS = {
    "ade20k": ade20k_classes,
    "coco_panoptic": coco_panoptic_classes,
    "coco_instance": coco_instance_classes,
    "cityscapes": cityscapes_classes,
}


def class_metadata(classes: tuple[ClassInfo, ...]) -> dict:
    """The EoMTConfig fields that describe the classes of a dataset table."""
    return {
        "num_classes": len(classes),
        "class_names": tuple(c.name for c in classes),
        "stuff_classes": tuple(c.id for c in classes if not c.isthing),
        "class_colors": tuple(c.color for c in classes),
    }


def _preset(dataset: str, task: str, size: str, img_size: int, num_queries: int = 200,
            family: str = "dinov2") -> EoMTConfig:
    backbone, num_blocks = (DINOV3_BACKBONES if family == "dinov3" else BACKBONES)[size]
    return EoMTConfig(backbone=backbone, img_size=img_size, num_queries=num_queries, num_blocks=num_blocks,
                      patch_size=16, task=task, **class_metadata(DATASETS[dataset]()))


PRESETS: dict[str, EoMTConfig] = {
    "ade20k_panoptic_eomt_large_640": _preset("ade20k", "panoptic", "large", 640),
    "ade20k_panoptic_eomt_large_1280": _preset("ade20k", "panoptic", "large", 1280),
    "ade20k_panoptic_eomt_giant_640": _preset("ade20k", "panoptic", "giant", 640),
    "ade20k_panoptic_eomt_giant_1280": _preset("ade20k", "panoptic", "giant", 1280),
    "ade20k_semantic_eomt_large_512": _preset("ade20k", "semantic", "large", 512, num_queries=100),
    "coco_panoptic_eomt_small_640_2x": _preset("coco_panoptic", "panoptic", "small", 640),
    "coco_panoptic_eomt_base_640_2x": _preset("coco_panoptic", "panoptic", "base", 640),
    "coco_panoptic_eomt_large_640": _preset("coco_panoptic", "panoptic", "large", 640),
    "coco_panoptic_eomt_large_1280": _preset("coco_panoptic", "panoptic", "large", 1280),
    "coco_panoptic_eomt_giant_640": _preset("coco_panoptic", "panoptic", "giant", 640),
    "coco_panoptic_eomt_giant_1280": _preset("coco_panoptic", "panoptic", "giant", 1280),
    "coco_instance_eomt_large_640": _preset("coco_instance", "instance", "large", 640),
    "coco_instance_eomt_large_1280": _preset("coco_instance", "instance", "large", 1280),
    "cityscapes_semantic_eomt_large_1024": _preset("cityscapes", "semantic", "large", 1024, num_queries=100),
    # DINOv3 (the zoo's model_zoo/dinov3.md). The upstream 1280 configs forget their input size; the zoo's is 1280.
    "coco_panoptic_eomt_small_640_dinov3": _preset("coco_panoptic", "panoptic", "small", 640, family="dinov3"),
    "coco_panoptic_eomt_base_640_dinov3": _preset("coco_panoptic", "panoptic", "base", 640, family="dinov3"),
    "coco_panoptic_eomt_large_640_dinov3": _preset("coco_panoptic", "panoptic", "large", 640, family="dinov3"),
    "coco_panoptic_eomt_large_1280_dinov3": _preset("coco_panoptic", "panoptic", "large", 1280, family="dinov3"),
    "ade_semantic_eomt_large_512_dinov3": _preset("ade20k", "semantic", "large", 512, num_queries=100,
                                                  family="dinov3"),
    "coco_instance_eomt_large_640_dinov3": _preset("coco_instance", "instance", "large", 640, family="dinov3"),
    "coco_instance_eomt_large_1280_dinov3": _preset("coco_instance", "instance", "large", 1280, family="dinov3"),
}
# Older names of a preset (older links and transformers' converter) -> the hub repo's name.
PRESET_ALIASES = {"ade20k_semantic_eomt_large_512_dinov3": "ade_semantic_eomt_large_512_dinov3"}
PRESETS.update({alias: PRESETS[name] for alias, name in PRESET_ALIASES.items()})

# The task and class table a model with this many classes was most likely trained for (HF configs carry
# only class names); 150 could also be ADE20K semantic, whose classes are the same.
_DATASET_BY_NUM_CLASSES = {150: ("ade20k", "panoptic"), 133: ("coco_panoptic", "panoptic"),
                           80: ("coco_instance", "instance"), 19: ("cityscapes", "semantic")}


def hub_repo(preset: str) -> str:
    """The hub repo id of a preset (an alias resolves to the repo's current name)."""
    return f"{HUB_ORGANISATION}/{PRESET_ALIASES.get(preset, preset)}"


def preset_in(text: str) -> str | None:
    """The longest preset name that occurs in `text` (a hub id, a file path), or None."""
    matches = [name for name in PRESETS if name in text]
    return max(matches, key=len) if matches else None


def metadata_for_num_classes(num_classes: int) -> dict:
    """Task and class metadata of the published dataset with that many classes; {} when there is none."""
    if num_classes not in _DATASET_BY_NUM_CLASSES:
        return {}
    dataset, task = _DATASET_BY_NUM_CLASSES[num_classes]
    return {"task": task, **class_metadata(DATASETS[dataset]())}
