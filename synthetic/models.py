"""Tiny random EoMT models for tests and benchmarks: small configs, heads sharpened so that they predict
segments, and the official checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import torch

import eomt


def tiny_config(**overrides) -> eomt.EoMTConfig:
    fields = dict(backbone="vit_small_patch14_reg4_dinov2", img_size=64, num_classes=5, num_queries=10,
                  num_blocks=1, backbone_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2})
    return eomt.EoMTConfig(**{**fields, **overrides})


def tiny_ade_config(**overrides) -> eomt.EoMTConfig:
    ade = eomt.PRESETS["ade20k_panoptic_eomt_large_640"]
    return tiny_config(**{"num_classes": 150, "num_queries": 12, "class_names": ade.class_names,
                          "stuff_classes": ade.stuff_classes, "class_colors": ade.class_colors, **overrides})


def confident_model(config: eomt.EoMTConfig, seed: int = 0) -> eomt.EoMT:
    """Random weights with sharpened class and mask heads. Plain random weights keep no query above the 0.8
    score, and their soft, half-image masks never own 80% of themselves; with few queries (3) and saturated
    masks, the first confident queries become segments."""
    torch.manual_seed(seed)
    model = eomt.EoMT(config).eval()
    with torch.no_grad():
        model.class_head.weight.mul_(150.0)
        model.mask_head[4].weight.mul_(300.0)
    return model


def save_original_format(model: eomt.EoMT, path: Path) -> Path:
    """The official layout: a flat state dict with `network.` keys (plus the criterion buffer it carries)."""
    state = {f"network.{k}": v for k, v in model.state_dict().items()}
    state["criterion.empty_weight"] = torch.ones(model.config.num_classes + 1)
    torch.save(state, path)
    return path
