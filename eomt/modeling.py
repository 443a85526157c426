"""The EoMT network: a plain ViT (a DINOv2 from timm, or a DINOv3 from `eomt.dinov3`) whose last
`num_blocks` blocks also carry learned queries, plus a class head, a mask head and a small upscaler that turn
the final tokens into mask and class logits.

Module and parameter names follow the official checkpoints (`network.` stripped), so an original state dict
loads with nothing renamed; `eomt.checkpoint` maps the Hugging Face names onto these.
"""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from eomt import dinov3
from eomt.config import EoMTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ScaleBlock(nn.Module):
    """Doubles the resolution of a feature map: transposed conv, GELU, depthwise 3x3 conv, LayerNorm over the
    channels (the official modules and parameter names).

    It works on channels-last maps (B, H, W, C), the layout the ViT's tokens already have: the 2x2 stride-2
    transposed conv is then one matrix product per pixel, and the LayerNorm needs no permutes. On CPU this runs
    the upscaler (most of the arithmetic of a small EoMT) about twice as fast as the NCHW modules (bench/train.py).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, dim = x.shape
        # Transposed conv: weight (in, out, 2, 2); pixel (y, x) writes the 2x2 block at (2y + i, 2x + j). As a
        # linear layer to (i, j, out), with the bias added inside the matrix product, interleaving the blocks
        # moves whole channel vectors.
        weight = self.conv1.weight.permute(2, 3, 1, 0).reshape(4 * dim, dim)
        x = F.linear(x, weight, self.conv1.bias.repeat(4))  # (B, H, W, 2 * 2 * out)
        x = x.view(batch, height, width, 2, 2, dim).permute(0, 1, 3, 2, 4, 5)
        x = self.act(x.reshape(batch, 2 * height, 2 * width, dim))
        # An NCHW view of channels-last memory: the depthwise conv takes its channels-last kernel.
        x = self.conv2(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm(x)


class Encoder(nn.Module):
    """The ViT and the input normalisation constants (checkpoint buffers `encoder.pixel_mean/std`)."""

    def __init__(self, config: EoMTConfig):
        super().__init__()
        if config.family == "dinov3":
            self.backbone = dinov3.build(config.backbone, config.patch_size, **config.backbone_kwargs)
        else:
            self.backbone = timm.create_model(config.backbone, pretrained=False, img_size=config.img_size,
                                              patch_size=config.patch_size, num_classes=0, **config.backbone_kwargs)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))


class EoMT(nn.Module):
    """EoMT. `model(images)` with images (B, 3, S, S) float in [0, 1], S = config.img_size, returns
    mask_logits (B, Q, 4S/16, 4S/16) and class_logits (B, Q, num_classes + 1; the last column is "no object")."""

    def __init__(self, config: EoMTConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        backbone = self.encoder.backbone
        dim = backbone.embed_dim
        self.grid_size = (config.img_size // config.patch_size,) * 2
        self._check_backbone(backbone)

        # Training anneals these from 1 to 0 (masked attention is a training device); released checkpoints hold 0.
        self.register_buffer("attn_mask_probs", torch.ones(config.num_blocks))
        self.q = nn.Embedding(config.num_queries, dim)
        self.class_head = nn.Linear(dim, config.num_classes + 1)
        self.mask_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(),
                                       nn.Linear(dim, dim))
        num_upscale = max(1, int(math.log2(config.patch_size)) - 2)
        self.upscale = nn.Sequential(*[ScaleBlock(dim) for _ in range(num_upscale)])

    def _check_backbone(self, backbone: nn.Module) -> None:
        # The forward below spells out the ViT; refuse timm options it does not implement rather than
        # silently computing something else.
        config = self.config
        depth = len(backbone.blocks)
        if not 1 <= config.num_blocks <= depth:
            raise ValueError(f"num_blocks={config.num_blocks} must lie in 1..{depth} (the backbone's depth)")
        if config.family == "dinov3":
            return  # eomt.dinov3 builds exactly what the forward runs
        num_patches = self.grid_size[0] * self.grid_size[1]
        if backbone.pos_embed is None or backbone.pos_embed.shape[1] != num_patches:
            raise ValueError(f"{config.backbone}: expected a position embedding over the {num_patches} patches only")
        for name in ("norm_pre", "patch_drop"):
            if not isinstance(getattr(backbone, name, nn.Identity()), nn.Identity):
                raise ValueError(f"{config.backbone}: backbone.{name} is not supported")
        attn = backbone.blocks[0].attn
        if not all(isinstance(getattr(attn, n, nn.Identity()), nn.Identity) for n in ("q_norm", "k_norm", "norm")):
            raise ValueError(f"{config.backbone}: attention with q/k norms is not supported")

    def forward(self, images: torch.Tensor, return_intermediate: bool = False):
        """Returns (mask_logits, class_logits); with return_intermediate=True, two lists of them instead: one
        pair predicted from the normed tokens before each of the last num_blocks blocks, then the final pair."""
        size = self.config.img_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"EoMT expects images of shape (B, 3, {size}, {size}), got {tuple(images.shape)}")
        backbone = self.encoder.backbone
        x, rope = self._embed((images - self.encoder.pixel_mean) / self.encoder.pixel_std)
        batch = x.shape[0]

        first_query_block = len(backbone.blocks) - self.config.num_blocks
        mask_logits_per_block, class_logits_per_block = [], []
        for i, block in enumerate(backbone.blocks):
            attn_mask = None
            if i == first_query_block:
                x = torch.cat([self.q.weight[None].expand(batch, -1, -1), x], dim=1)
            if i >= first_query_block:
                # float() syncs with the device, so only training reads the probabilities.
                mask_prob = float(self.attn_mask_probs[i - first_query_block]) if self.training else 0.0
                masked = mask_prob > 0
                if masked or return_intermediate:
                    mask_logits, class_logits = self._predict(backbone.norm(x))
                    mask_logits_per_block.append(mask_logits)
                    class_logits_per_block.append(class_logits)
                if masked:
                    attn_mask = self._attention_mask(mask_logits, x.shape[1], mask_prob)
            x = block(x, attn_mask, rope) if rope is not None else self._block(block, x, attn_mask)

        mask_logits, class_logits = self._predict(backbone.norm(x))
        if not return_intermediate:
            return mask_logits, class_logits
        return mask_logits_per_block + [mask_logits], class_logits_per_block + [class_logits]

    def _embed(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Tokens [cls, registers, patches] and, for DINOv3, the RoPE (cos, sin) of the patch grid."""
        backbone = self.encoder.backbone
        if self.config.family == "dinov3":
            return backbone.patch_embed(pixels), backbone.rope(self.grid_size)
        x = backbone.patch_embed(pixels) + backbone.pos_embed
        prefix = [backbone.cls_token.expand(x.shape[0], -1, -1), backbone.reg_token.expand(x.shape[0], -1, -1)]
        return torch.cat([*prefix, x], dim=1), None

    def _predict(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num_queries = self.config.num_queries
        queries = tokens[:, :num_queries]
        patches = tokens[:, num_queries + self.encoder.backbone.num_prefix_tokens:]
        features = self.upscale(patches.unflatten(1, self.grid_size))  # (B, H, W, C)
        # bqc,bhwc->bqhw as a matrix product, not einsum: the same kernel in PyTorch, while ONNX Runtime's MatMul
        # runs it twice as fast as its Einsum.
        pixels = features.flatten(1, 2).transpose(1, 2)  # (B, C, H*W)
        mask_logits = (self.mask_head(queries) @ pixels).unflatten(2, features.shape[1:3])
        return mask_logits, self.class_head(queries)

    def _attention_mask(self, mask_logits: torch.Tensor, num_tokens: int, mask_prob: float) -> torch.Tensor:
        """(B, 1, N, N) bool, True = may attend. Each query is restricted, with probability mask_prob, to the
        patches where its current mask logit (pooled bilinearly to the patch grid) is positive."""
        batch, num_queries = mask_logits.shape[:2]
        first_patch = num_queries + self.encoder.backbone.num_prefix_tokens
        inside = F.interpolate(mask_logits, self.grid_size, mode="bilinear").flatten(2) > 0
        restricted = torch.rand(batch, num_queries, device=mask_logits.device) <= mask_prob
        attn_mask = torch.ones(batch, num_tokens, num_tokens, dtype=torch.bool, device=mask_logits.device)
        attn_mask[:, :num_queries, first_patch:] = inside | ~restricted[..., None]
        return attn_mask[:, None]

    def _block(self, block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """A timm (DINOv2) block; DINOv3 blocks are eomt.dinov3.Block modules called directly."""
        x = x + block.drop_path1(block.ls1(self._attention(block.attn, block.norm1(x), attn_mask)))
        return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))

    def _attention(self, attn: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, num_tokens, dim = x.shape
        qkv = attn.qkv(x).reshape(batch, num_tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dropout = attn.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return attn.proj_drop(attn.proj(out.transpose(1, 2).reshape(batch, num_tokens, dim)))
