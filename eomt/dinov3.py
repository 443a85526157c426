"""The DINOv3 ViT (Meta's ViT-S/B/L16) as EoMT uses it: patch 16, 1 cls + 4 register tokens, no position
embedding but 2-D rotary position embeddings (RoPE) on the patch tokens only, LayerNorm eps 1e-5, attention
with q and v biases and no k bias, LayerScale, GELU MLP.

Module and parameter names are those of the official EoMT checkpoints (`network.encoder.backbone.` stripped):
`patch_embed.{cls_token, register_tokens, patch_embeddings}`, `blocks.{i}.{norm1, attention.{q,k,v,o}_proj,
layer_scale1.lambda1, norm2, mlp.{up,down}_proj, layer_scale2.lambda1}`, `norm`. The RoPE periods are not
stored in any checkpoint: a non-persistent buffer, rebuilt by `init_non_persistent_buffers`.

RoPE is applied to the *last* grid-size tokens of the sequence, so that the EoMT queries and the prefix tokens
in front of the patches, however many there are, stay unrotated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The published sizes, under the names timm gives the same networks.
SIZES = {
    "vit_small_patch16_dinov3_qkvb": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base_patch16_dinov3_qkvb": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large_patch16_dinov3_qkvb": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
NORM_EPS = 1e-5
ROPE_TEMPERATURE = 100.0
NUM_REGISTERS = 4


def rotate_patches(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE ("rotate half" layout) on the last len(cos) tokens of x (B, heads, T, head_dim); the tokens in
    front of them (queries, cls, registers) pass unchanged."""
    num_patches = cos.shape[0]
    prefix, patches = x.split([x.shape[-2] - num_patches, num_patches], dim=-2)
    first, second = patches.chunk(2, dim=-1)
    rotated = patches * cos.to(x.dtype) + torch.cat([-second, first], dim=-1) * sin.to(x.dtype)
    return torch.cat([prefix, rotated], dim=-2)


class RotaryEmbedding(nn.Module):
    """DINOv3's 2-D RoPE: patch centres normalised to [-1, 1] per axis; head_dim / 4 periods
    temperature ** (4 i / head_dim) per axis; angles (y then x) repeated for both halves of a head.
    Training rescales all coordinates by one log-uniform factor in [1/rescale, rescale], as DINOv3 does."""

    def __init__(self, head_dim: int, rescale: float | None = 2.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"DINOv3 RoPE needs a head width divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.rescale = rescale
        self.register_buffer("periods", self._periods(), persistent=False)

    def _periods(self, device: torch.device | str = "cpu") -> torch.Tensor:
        exponents = torch.arange(self.head_dim // 4, dtype=torch.float32, device=device) * 4 / self.head_dim
        return ROPE_TEMPERATURE ** exponents

    def init_non_persistent_buffers(self) -> None:
        """Recomputes the periods (after a build on the meta device and `to_empty`)."""
        self.periods = self._periods(self.periods.device)

    def forward(self, grid_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (grid_h * grid_w, head_dim), for the row-major patch grid."""
        height, width = grid_size
        device = self.periods.device
        ys = torch.arange(0.5, height, dtype=torch.float32, device=device) / height
        xs = torch.arange(0.5, width, dtype=torch.float32, device=device) / width
        coords = 2 * torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1) - 1  # (N, 2)
        if self.training and self.rescale:
            log_range = math.log(self.rescale)
            coords = coords * torch.empty(1, device=device).uniform_(-log_range, log_range).exp()
        angles = (2 * math.pi * coords[:, :, None] / self.periods).flatten(1).tile(2)  # (N, head_dim)
        return angles.cos(), angles.sin()


class PatchEmbed(nn.Module):
    """Patches (a stride-16 conv) behind the cls token and the register tokens: (B, 1 + 4 + N, D)."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.empty(1, NUM_REGISTERS, dim))
        self.patch_embeddings = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        patches = self.patch_embeddings(images).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(batch, -1, -1), self.register_tokens.expand(batch, -1, -1),
                          patches], dim=1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        batch, num_tokens, dim = x.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(x).view(batch, num_tokens, self.num_heads, -1).transpose(1, 2)

        q, k = rotate_patches(heads(self.q_proj), *rope), rotate_patches(heads(self.k_proj), *rope)
        out = F.scaled_dot_product_attention(q, k, heads(self.v_proj), attn_mask=attn_mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, num_tokens, dim))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up_proj = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.down_proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, init_values: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attention = Attention(dim, num_heads)
        self.layer_scale1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.layer_scale1(self.attention(self.norm1(x), attn_mask, rope))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class DINOv3ViT(nn.Module):
    """The backbone's modules; EoMT runs them (`patch_embed`, `rope`, `blocks`, `norm`) in its own forward.

    init_values: the LayerScale start of a new network; rope_rescale: RoPE's training-time coordinate
    rescaling factor (None: off)."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int = 16, mlp_ratio: float = 4.0,
                 init_values: float = 1e-5, rope_rescale: float | None = 2.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 + NUM_REGISTERS
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.rope = RotaryEmbedding(embed_dim // num_heads, rope_rescale)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=NORM_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        # Random, distinct register tokens: with no position embedding, equal ones would stay equal.
        nn.init.trunc_normal_(self.patch_embed.cls_token, std=0.02)
        nn.init.trunc_normal_(self.patch_embed.register_tokens, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def build(name: str, patch_size: int = 16, **kwargs) -> DINOv3ViT:
    """The DINOv3 ViT `name` (one of SIZES), its sizes overridden by kwargs (a tiny test model)."""
    if name not in SIZES:
        raise ValueError(f"unknown DINOv3 backbone {name!r}; one of {', '.join(SIZES)}")
    try:
        return DINOv3ViT(patch_size=patch_size, **{**SIZES[name], **kwargs})
    except TypeError as err:  # an unknown keyword
        raise ValueError(f"{name}: bad backbone_kwargs {kwargs} ({err})") from err
