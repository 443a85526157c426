"""Delta checkpoints and the pretrained DINOv3 backbones they are relative to.

The published DINOv3 EoMT files (`tue-mps/*_dinov3`) store every `network.encoder.backbone.*` tensor as the
difference from Meta's pretrained DINOv3 weights, the heads (`q`, `class_head`, `mask_head`, `upscale`) as
absolute values, and the buffers minus their base values (`attn_mask_probs` - 1, `encoder.pixel_mean/std` -
ImageNet's). The official loader adds the pretrained backbone and the base values back; so does
`add_backbone`. A delta file is recognised by its pixel_std: zero, where an absolute file holds ImageNet's.

The pretrained backbone comes in two layouts, both renamed here to EoMT names (`encoder.backbone.*`):
    transformers  `embeddings.{cls_token, register_tokens, patch_embeddings.*}`, `layer.{i}.*` (transformers
                  5 writes `model.layer.{i}.*`), `norm.*`: the hub's facebook/dinov3-vit*16-pretrain-lvd1689m
    meta          Meta's own `.pth`: `cls_token`, `storage_tokens`, `patch_embed.proj.*`, `blocks.{i}.attn.qkv.*`
                  (fused; its k bias is masked to zero), `attn.proj`, `ls1/ls2.gamma`, `mlp.fc1/fc2`, `norm.*`
Pretraining-only tensors (`mask_token`, `rope_embed.periods`, `*.bias_mask`) are dropped.
"""

from __future__ import annotations

import re

import torch

from eomt.modeling import IMAGENET_MEAN, IMAGENET_STD

BACKBONE_PREFIX = "encoder.backbone."
# What the official loader adds to the buffers of a delta file (the value each has in a fresh network).
BASE_BUFFERS = {
    "attn_mask_probs": lambda shape: torch.ones(shape),
    "encoder.pixel_mean": lambda shape: torch.tensor(IMAGENET_MEAN).view(shape),
    "encoder.pixel_std": lambda shape: torch.tensor(IMAGENET_STD).view(shape),
}
# (pattern, replacement) from Meta's names to EoMT's (backbone-relative), applied in order.
META_RENAMES = [
    (r"^cls_token$", "patch_embed.cls_token"),
    (r"^storage_tokens$", "patch_embed.register_tokens"),
    (r"^patch_embed\.proj\.", "patch_embed.patch_embeddings."),
    (r"\.attn\.proj\.", ".attention.o_proj."),
    (r"\.ls1\.gamma$", ".layer_scale1.lambda1"),
    (r"\.ls2\.gamma$", ".layer_scale2.lambda1"),
    (r"\.mlp\.fc1\.", ".mlp.up_proj."),
    (r"\.mlp\.fc2\.", ".mlp.down_proj."),
]
TRANSFORMERS_RENAMES = [
    (r"^embeddings\.", "patch_embed."),
    (r"^(model\.)?layer\.(\d+)\.", r"blocks.\2."),
]
PRETRAINING_ONLY = re.compile(r"(^|\.)mask_token$|^rope_embed|\.bias_mask$")  # rope_embed(dings): periods
_QKV = re.compile(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")


def is_delta(state: dict[str, torch.Tensor]) -> bool:
    """True for a delta checkpoint (EoMT names): its pixel_std is the difference from ImageNet's, i.e. ~0."""
    pixel_std = state.get("encoder.pixel_std")
    return pixel_std is not None and bool(pixel_std.abs().max() < 0.05)


def backbone_layout(keys) -> str | None:
    """'meta', 'transformers' or None (not a DINOv3 backbone file)."""
    keys = set(keys)
    if "storage_tokens" in keys or any(_QKV.match(k) for k in keys):
        return "meta"
    if "embeddings.cls_token" in keys:
        return "transformers"
    return None


def backbone_to_eomt(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """A pretrained DINOv3 state dict in `layout` -> EoMT names (`encoder.backbone.*`)."""
    renames = META_RENAMES if layout == "meta" else TRANSFORMERS_RENAMES
    out = {}
    for key, tensor in state.items():
        if PRETRAINING_ONLY.search(key):
            continue
        if match := _QKV.match(key):
            block, kind = match.groups()
            q, k, v = tensor.chunk(3, dim=0)
            # DINOv3 has no k bias: Meta stores a masked one (zero), EoMT none.
            parts = {"q": q, "k": k, "v": v} if kind == "weight" else {"q": q, "v": v}
            for name, part in parts.items():
                out[f"{BACKBONE_PREFIX}blocks.{block}.attention.{name}_proj.{kind}"] = part
            continue
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        out[BACKBONE_PREFIX + key] = tensor
    return out


def add_backbone(delta: dict[str, torch.Tensor], backbone: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Absolute weights from a delta state dict and the pretrained backbone (both EoMT names, matching keys and
    shapes checked by the caller), as the official loader computes them."""
    absolute = dict(delta)
    for key, base in backbone.items():
        absolute[key] = delta[key].float() + base.float()
    for key, base_value in BASE_BUFFERS.items():
        if key in absolute:
            absolute[key] = absolute[key].float() + base_value(absolute[key].shape)
    return absolute
