"""EoMT ("Your ViT is Secretly an Image Segmentation Model"): every published checkpoint, reference-exact
pre- and post-processing, CPU or GPU.

    import eomt
    model = eomt.load_model("tue-mps/ade20k_panoptic_eomt_large_640")   # or a file, a folder, preset=...
    model = eomt.load_model("tue-mps/coco_panoptic_eomt_large_640_dinov3",  # DINOv3: delta + its backbone
                            backbone_weights="facebook/dinov3-vitl16-pretrain-lvd1689m")
    result = eomt.Predictor(model).panoptic(image)                         # segment_map, class_map, segments

`EoMTConfig`, `PRESETS` and the class tables import without torch; the rest loads on first use, so that
code that only needs class names (the viewer) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from eomt.config import EoMTConfig
from eomt.presets import PRESETS

if TYPE_CHECKING:
    from eomt import images, render, transforms
    from eomt.checkpoint import CheckpointError, load_model, read_backbone, save_model
    from eomt.modeling import EoMT
    from eomt.postprocess import PanopticResult
    from eomt.predictor import Predictor

_LAZY = {
    "EoMT": "eomt.modeling",
    "load_model": "eomt.checkpoint",
    "save_model": "eomt.checkpoint",
    "read_backbone": "eomt.checkpoint",
    "CheckpointError": "eomt.checkpoint",
    "PanopticResult": "eomt.postprocess",
    "Predictor": "eomt.predictor",
}

_MODULES = ("transforms", "images", "render")

__all__ = ["EoMTConfig", "PRESETS", "EoMT", "load_model", "save_model", "read_backbone", "CheckpointError",
           "PanopticResult", "Predictor", "transforms", "images", "render"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"eomt.{name}")
    raise AttributeError(f"module 'eomt' has no attribute {name!r}")
