"""Oracles for the EoMT tests: the transformers model, the official key layout as the official repository's
checkpoints have it (written here independently of eomt.checkpoint), and the reference post-processing written
line by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = REPO / "tests" / "data" / "ade20k_sample" / "images" / "ADE_val_00000001.jpg"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------ transformers oracle

def hf_model(hidden: int, layers: int, heads: int, num_blocks: int, swiglu: bool = False, num_labels: int = 5,
             num_queries: int = 10, image_size: int = 64, seed: int = 0):
    """A random transformers EoMT with every parameter perturbed (so that zero-initialised register tokens
    and unit layer scales matter) and masked attention off, as in the released checkpoints."""
    from transformers import EomtConfig, EomtForUniversalSegmentation

    torch.manual_seed(seed)
    config = EomtConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        num_blocks=num_blocks, use_swiglu_ffn=swiglu, num_labels=num_labels,
                        num_queries=num_queries, image_size=image_size, patch_size=16, num_register_tokens=4)
    model = EomtForUniversalSegmentation(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
        model.attn_mask_probs.zero_()
    return model


def hf_logits(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logits for images in [0, 1] (its model expects ImageNet-normalised pixels)."""
    with torch.no_grad():
        out = model(pixel_values=(images - IMAGENET_MEAN) / IMAGENET_STD)
    return out.masks_queries_logits, out.class_queries_logits


def hf_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers keys -> the official `network.*` layout (fused qkv, packed SwiGLU fc1)."""
    renames = [
        ("embeddings.patch_embeddings.projection.", "encoder.backbone.patch_embed.proj."),
        ("embeddings.cls_token", "encoder.backbone.cls_token"),
        ("embeddings.register_tokens", "encoder.backbone.reg_token"),
        ("layers.", "encoder.backbone.blocks."),
        (".attention.out_proj.", ".attn.proj."),
        (".layer_scale1.lambda1", ".ls1.gamma"),
        (".layer_scale2.lambda1", ".ls2.gamma"),
        (".mlp.down_proj.", ".mlp.fc2."),
        ("layernorm.", "encoder.backbone.norm."),
        ("query.weight", "q.weight"),
        ("class_predictor.", "class_head."),
        ("mask_head.fc1.", "mask_head.0."), ("mask_head.fc2.", "mask_head.2."), ("mask_head.fc3.", "mask_head.4."),
        ("upscale_block.block.", "upscale."),
        (".layernorm2d.", ".norm."),
    ]
    out = {}
    for key, value in state.items():
        if key.startswith("criterion."):
            out[key] = value
            continue
        if key == "embeddings.position_embeddings.weight":
            out["network.encoder.backbone.pos_embed"] = value[None]
            continue
        if any(part in key for part in (".q_proj.", ".k_proj.", ".v_proj.", ".gate_proj.", ".up_proj.")):
            continue
        for old, new in renames:
            key = key.replace(old, new)
        out["network." + key] = value
    layers = {k.split(".")[1] for k in state if k.startswith("layers.")}
    for i in layers:
        for p in ("weight", "bias"):
            qkv = [state[f"layers.{i}.attention.{n}_proj.{p}"] for n in "qkv"]
            out[f"network.encoder.backbone.blocks.{i}.attn.qkv.{p}"] = torch.cat(qkv)
            if f"layers.{i}.mlp.gate_proj.{p}" in state:
                halves = [state[f"layers.{i}.mlp.{n}_proj.{p}"] for n in ("gate", "up")]
                out[f"network.encoder.backbone.blocks.{i}.mlp.fc1.{p}"] = torch.cat(halves)
    out["network.encoder.pixel_mean"] = IMAGENET_MEAN.clone()
    out["network.encoder.pixel_std"] = IMAGENET_STD.clone()
    return out


# ------------------------------------------------------------------------- the documented official layout

def official_keys(dim: int, depth: int, num_patches: int, num_queries: int, num_classes: int,
                  num_blocks: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of an official (GELU) checkpoint with its shape, as the official checkpoints store them."""
    b = "network.encoder.backbone."
    keys = {
        "network.attn_mask_probs": (num_blocks,),
        "network.encoder.pixel_mean": (1, 3, 1, 1), "network.encoder.pixel_std": (1, 3, 1, 1),
        b + "cls_token": (1, 1, dim), b + "reg_token": (1, 4, dim), b + "pos_embed": (1, num_patches, dim),
        b + "patch_embed.proj.weight": (dim, 3, 16, 16), b + "patch_embed.proj.bias": (dim,),
        b + "norm.weight": (dim,), b + "norm.bias": (dim,),
        "network.q.weight": (num_queries, dim),
        "network.class_head.weight": (num_classes + 1, dim), "network.class_head.bias": (num_classes + 1,),
    }
    for i in range(depth):
        block = f"{b}blocks.{i}."
        keys.update({
            block + "norm1.weight": (dim,), block + "norm1.bias": (dim,),
            block + "norm2.weight": (dim,), block + "norm2.bias": (dim,),
            block + "attn.qkv.weight": (3 * dim, dim), block + "attn.qkv.bias": (3 * dim,),
            block + "attn.proj.weight": (dim, dim), block + "attn.proj.bias": (dim,),
            block + "ls1.gamma": (dim,), block + "ls2.gamma": (dim,),
            block + "mlp.fc1.weight": (4 * dim, dim), block + "mlp.fc1.bias": (4 * dim,),
            block + "mlp.fc2.weight": (dim, 4 * dim), block + "mlp.fc2.bias": (dim,),
        })
    for i in (0, 2, 4):
        keys[f"network.mask_head.{i}.weight"] = (dim, dim)
        keys[f"network.mask_head.{i}.bias"] = (dim,)
    for i in (0, 1):
        keys.update({
            f"network.upscale.{i}.conv1.weight": (dim, dim, 2, 2), f"network.upscale.{i}.conv1.bias": (dim,),
            f"network.upscale.{i}.conv2.weight": (dim, 1, 3, 3),
            f"network.upscale.{i}.norm.weight": (dim,), f"network.upscale.{i}.norm.bias": (dim,),
        })
    return keys


# ------------------------------------------------------------------------- naive post-processing reference

def naive_upsample(mask_logits, img_size, resized, original):
    """All queries at once, as the reference does."""
    masks = F.interpolate(mask_logits[None], size=(img_size, img_size), mode="bilinear", align_corners=False)
    masks = masks[:, :, :resized[0], :resized[1]]
    return F.interpolate(masks, size=tuple(original), mode="bilinear", align_corners=False)[0]


def naive_panoptic(mask_logits, class_logits, img_size, resized, original, stuff_classes,
                   score_threshold=0.8, overlap_threshold=0.8, mask_threshold=0.5):
    """The reference panoptic merge, line by line (upsamples every query): (segment_map, class_map, segments)."""
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > score_threshold)
    height, width = original
    segment_map = torch.full((height, width), -1, dtype=torch.long)
    class_map = torch.full((height, width), -1, dtype=torch.long)
    segments = []
    if keep.any():
        probs = naive_upsample(mask_logits, img_size, resized, original)[keep].sigmoid()
        owner = (scores[keep][:, None, None] * probs).argmax(0)
        stuff_ids = {}
        for k, label in enumerate(labels[keep].tolist()):
            orig = probs[k] >= mask_threshold
            new = owner == k
            final = orig & new
            orig_area, new_area, final_area = orig.sum().item(), new.sum().item(), final.sum().item()
            if orig_area == 0 or new_area == 0 or final_area == 0 or new_area / orig_area < overlap_threshold:
                continue
            if label in stuff_classes and label in stuff_ids:
                segment_map[final] = stuff_ids[label]
                class_map[final] = label
                continue
            if label in stuff_classes:
                stuff_ids[label] = len(segments)
            segment_map[final] = len(segments)
            class_map[final] = label
            segments.append({"id": len(segments), "category_id": label, "isthing": label not in stuff_classes,
                             "score": scores[keep][k].item()})
        for segment in segments:
            segment["area"] = int((segment_map == segment["id"]).sum())
    return segment_map, class_map, segments


def synthetic_logits(num_queries: int, num_classes: int, grid: int, seed: int, confident: float = 0.5):
    """Mask logits of smooth blobs (so masks have sizeable areas and overlap) and class logits where a
    fraction of the queries is confident about a random class."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(grid).float(), torch.arange(grid).float(), indexing="ij")
    centres = torch.rand(num_queries, 2, generator=g) * grid
    radii = 1.5 + torch.rand(num_queries, generator=g) * grid / 6
    distance = ((ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2).sqrt()
    mask_logits = (radii[:, None, None] - distance) + torch.randn(num_queries, grid, grid, generator=g) * 0.5
    class_logits = torch.randn(num_queries, num_classes + 1, generator=g)
    chosen = torch.randint(0, num_classes + 1, (num_queries,), generator=g)
    sure = torch.rand(num_queries, generator=g) < confident
    class_logits[sure, chosen[sure]] += 8 + torch.rand(int(sure.sum()), generator=g) * 4
    return mask_logits, class_logits


# ------------------------------------------------------------------------------- DINOv3 (transformers oracle)

def hf_dinov3_model(hidden: int, layers: int, heads: int, num_blocks: int, num_labels: int = 5,
                    num_queries: int = 10, image_size: int = 64, intermediate: int | None = None, seed: int = 0,
                    step: float | None = None):
    """A random transformers EoMT-DINOv3 (LayerNorm eps 1e-5, DINOv3's value; transformers defaults to 1e-6)
    with every parameter perturbed and masked attention off. step: round every parameter to a multiple of it
    (a power of two), so that differences and sums of such weights are exact in float32."""
    from transformers import EomtDinov3Config, EomtDinov3ForUniversalSegmentation

    torch.manual_seed(seed)
    config = EomtDinov3Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=intermediate or 4 * hidden, num_blocks=num_blocks,
                              num_labels=num_labels, num_queries=num_queries, image_size=image_size, patch_size=16,
                              num_register_tokens=4, layer_norm_eps=1e-5)
    model = EomtDinov3ForUniversalSegmentation(config).eval()
    _perturb(model, step)
    with torch.no_grad():
        model.attn_mask_probs.zero_()
    return model


def hf_dinov3_backbone(hidden: int, layers: int, heads: int, intermediate: int | None = None, seed: int = 0,
                       step: float | None = None):
    """A random transformers DINOv3ViTModel: a stand-in for Meta's pretrained backbone."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=intermediate or 4 * hidden, num_register_tokens=4, patch_size=16,
                             layer_norm_eps=1e-5)
    model = DINOv3ViTModel(config).eval()
    _perturb(model, step)
    return model


def _perturb(model, step: float | None) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
            if step is not None:
                parameter.copy_((parameter / step).round() * step)


def hub_backbone_state(backbone) -> dict[str, torch.Tensor]:
    """A DINOv3ViTModel's weights as the hub's facebook/dinov3-* model.safetensors holds them: `layer.N.*` (the
    transformers 4.56 names; transformers 5 writes `model.layer.N.*`), with the pretraining mask_token."""
    return {key.removeprefix("model."): value.clone() for key, value in backbone.state_dict().items()}


def meta_backbone_state(hub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights in Meta's own layout (github facebookresearch/dinov3 `.pth`): fused qkv with a masked
    zero k bias, `storage_tokens`, `ls1/ls2.gamma`, `mlp.fc1/fc2`, the RoPE periods as a buffer."""
    out = {"cls_token": hub["embeddings.cls_token"], "storage_tokens": hub["embeddings.register_tokens"],
           "mask_token": hub["embeddings.mask_token"],
           "patch_embed.proj.weight": hub["embeddings.patch_embeddings.weight"],
           "patch_embed.proj.bias": hub["embeddings.patch_embeddings.bias"],
           "norm.weight": hub["norm.weight"], "norm.bias": hub["norm.bias"]}
    layers = sorted({int(k.split(".")[1]) for k in hub if k.startswith("layer.")})
    dim = hub["norm.weight"].shape[0]
    for i in layers:
        a, b = f"layer.{i}.", f"blocks.{i}."
        out[b + "attn.qkv.weight"] = torch.cat([hub[a + f"attention.{n}_proj.weight"] for n in "qkv"])
        out[b + "attn.qkv.bias"] = torch.cat([hub[a + "attention.q_proj.bias"], torch.zeros(dim),
                                              hub[a + "attention.v_proj.bias"]])
        out[b + "attn.qkv.bias_mask"] = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2"), ("attn.proj", "attention.o_proj"),
                             ("mlp.fc1", "mlp.up_proj"), ("mlp.fc2", "mlp.down_proj")):
            for p in ("weight", "bias"):
                out[f"{b}{ours}.{p}"] = hub[f"{a}{theirs}.{p}"]
        out[b + "ls1.gamma"] = hub[a + "layer_scale1.lambda1"]
        out[b + "ls2.gamma"] = hub[a + "layer_scale2.lambda1"]
    out["rope_embed.periods"] = torch.ones(8)  # a buffer of Meta's model that loaders recompute
    return out


def hf_dinov3_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers EoMT-DINOv3 keys -> the official `network.*` layout (eomt-reference.md section 5)."""
    renames = [("embeddings.", "encoder.backbone.patch_embed."), ("layers.", "encoder.backbone.blocks."),
               ("layernorm.", "encoder.backbone.norm."), ("query.", "q."), ("class_predictor.", "class_head."),
               ("mask_head.fc1.", "mask_head.0."), ("mask_head.fc2.", "mask_head.2."),
               ("mask_head.fc3.", "mask_head.4."), ("upscale_block.block.", "upscale.")]
    out = {}
    for key, value in state.items():
        if not key.startswith("criterion."):
            for old, new in renames:
                if key.startswith(old):
                    key = new + key.removeprefix(old)
            key = "network." + key.replace(".layernorm2d.", ".norm.")
        out[key] = value.clone()
    out["network.encoder.pixel_mean"] = IMAGENET_MEAN.clone()
    out["network.encoder.pixel_std"] = IMAGENET_STD.clone()
    return out


def official_delta(absolute: dict[str, torch.Tensor], hub_backbone: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A delta file as the official code makes and reads them: the backbone minus the pretrained one (the hub
    file renamed as the official ViT wrapper renames it: embeddings -> patch_embed, layer -> blocks, no
    mask_token), heads absolute, buffers minus the values of a fresh network."""
    base = {}
    for key, value in hub_backbone.items():
        if key == "embeddings.mask_token":
            continue
        key = key.replace("embeddings.", "patch_embed.", 1) if key.startswith("embeddings.") else key
        key = "blocks." + key.removeprefix("layer.") if key.startswith("layer.") else key
        base["network.encoder.backbone." + key] = value
    base["network.attn_mask_probs"] = torch.ones_like(absolute["network.attn_mask_probs"])
    base["network.encoder.pixel_mean"] = IMAGENET_MEAN.clone()
    base["network.encoder.pixel_std"] = IMAGENET_STD.clone()
    return {key: value - base[key] if key in base else value.clone() for key, value in absolute.items()}


def official_dinov3_keys(dim: int, depth: int, num_queries: int, num_classes: int, num_blocks: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of an official DINOv3 EoMT checkpoint with its shape (eomt-reference.md section 5)."""
    b = "network.encoder.backbone."
    keys = {
        "network.attn_mask_probs": (num_blocks,),
        "network.encoder.pixel_mean": (1, 3, 1, 1), "network.encoder.pixel_std": (1, 3, 1, 1),
        b + "patch_embed.cls_token": (1, 1, dim), b + "patch_embed.register_tokens": (1, 4, dim),
        b + "patch_embed.patch_embeddings.weight": (dim, 3, 16, 16), b + "patch_embed.patch_embeddings.bias": (dim,),
        b + "norm.weight": (dim,), b + "norm.bias": (dim,),
        "network.q.weight": (num_queries, dim),
        "network.class_head.weight": (num_classes + 1, dim), "network.class_head.bias": (num_classes + 1,),
    }
    for i in range(depth):
        block = f"{b}blocks.{i}."
        keys.update({
            block + "norm1.weight": (dim,), block + "norm1.bias": (dim,),
            block + "attention.q_proj.weight": (dim, dim), block + "attention.q_proj.bias": (dim,),
            block + "attention.k_proj.weight": (dim, dim),
            block + "attention.v_proj.weight": (dim, dim), block + "attention.v_proj.bias": (dim,),
            block + "attention.o_proj.weight": (dim, dim), block + "attention.o_proj.bias": (dim,),
            block + "layer_scale1.lambda1": (dim,),
            block + "norm2.weight": (dim,), block + "norm2.bias": (dim,),
            block + "mlp.up_proj.weight": (4 * dim, dim), block + "mlp.up_proj.bias": (4 * dim,),
            block + "mlp.down_proj.weight": (dim, 4 * dim), block + "mlp.down_proj.bias": (dim,),
            block + "layer_scale2.lambda1": (dim,),
        })
    heads = official_keys(dim, 0, 1, num_queries, num_classes, num_blocks)
    keys.update({k: v for k, v in heads.items() if k.startswith(("network.mask_head.", "network.upscale."))})
    return keys


# ------------------------------------------------------------------------------------- pycocotools oracle

def pycocotools_image_counts(evaluator, threshold_index: int):
    """{(image id, category id): (tp, fp, fn)} from COCOeval's evalImgs at area "all", 100 detections."""
    counts = {}
    for e in evaluator.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        matched = e["dtMatches"][threshold_index] > 0
        ignored = e["dtIgnore"][threshold_index].astype(bool)
        tp = int((matched & ~ignored).sum())
        counts[e["image_id"], e["category_id"]] = (tp, int((~matched & ~ignored).sum()),
                                                   int((~np.asarray(e["gtIgnore"], bool)).sum()) - tp)
    return counts
