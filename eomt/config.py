"""The architecture and class metadata of one EoMT model, as a small frozen dataclass.

Torch-free so that presets and class tables can be read without building a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from eomt.classes import ClassInfo, ClassTable

TASKS = ("panoptic", "instance", "semantic")
PRECISIONS = ("fp32", "bf16", "fp16")  # --dtype: float32, or bf16 / fp16 autocast (eomt.devices)
SCORE_DIGITS = 6  # scores as files store them: enough to rank, and the same text on every rerun


def backbone_family(backbone: str) -> str:
    """'dinov3' for the DINOv3 ViTs (named as timm names them, `vit_*_patch16_dinov3_qkvb`), else 'dinov2'."""
    return "dinov3" if "dinov3" in backbone else "dinov2"


@dataclass(frozen=True)
class EoMTConfig:
    """Everything needed to build an EoMT network and to interpret its outputs.

    backbone: the ViT. A DINOv2 with 4 registers is a timm model name (`vit_*_patch14_reg4_dinov2`) and
    backbone_kwargs go to `timm.create_model`; a DINOv3 (`vit_{small,base,large}_patch16_dinov3_qkvb`, the
    timm names of Meta's ViT-S/B/L16) is built by `eomt.dinov3` with the same kwargs names (depth,
    embed_dim, num_heads, mlp_ratio, init_values; rope_rescale). E.g. {"depth": 2, "embed_dim": 32,
    "num_heads": 2} for a tiny test model. `eomt.presets.BACKBONE_PRESETS` holds the published sizes.
    img_size: the one square input size the network accepts (DINOv2: its position embedding is fixed to that
    grid; DINOv3: its RoPE grid and the upscaler's output are).
    num_blocks: how many of the last ViT blocks also process the queries.
    """

    backbone: str
    img_size: int
    num_classes: int
    num_queries: int = 200
    num_blocks: int = 4
    patch_size: int = 16
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    task: str = "panoptic"
    class_names: tuple[str, ...] = ()
    stuff_classes: tuple[int, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        # JSON and callers hand in lists; store tuples so that configs compare equal and stay immutable.
        object.__setattr__(self, "backbone_kwargs", dict(self.backbone_kwargs))
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "stuff_classes", tuple(int(c) for c in self.stuff_classes))
        object.__setattr__(self, "class_colors", tuple(tuple(int(v) for v in c) for c in self.class_colors))
        problems = []
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("img_size", "num_classes", "num_queries", "num_blocks", "patch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not problems and self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.class_names and len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.class_colors and (len(self.class_colors) != self.num_classes
                                  or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.class_colors)):
            problems.append(f"class_colors must hold num_classes={self.num_classes} RGB triples in 0..255")
        if any(not 0 <= c < self.num_classes for c in self.stuff_classes):
            problems.append(f"stuff_classes must lie in 0..{self.num_classes - 1}")
        if problems:
            raise ValueError("invalid EoMTConfig: " + "; ".join(problems))

    @property
    def family(self) -> str:
        """The backbone family: 'dinov2' or 'dinov3'."""
        return backbone_family(self.backbone)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `EoMTConfig.from_dict` reads it back."""
        return {
            f.name: (list(map(list, v)) if f.name == "class_colors" else list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EoMTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EoMTConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def class_name(self, class_id: int) -> str:
        return self.class_names[class_id] if self.class_names else f"class {class_id}"

    def class_table(self) -> ClassTable:
        """The model's classes (names "class N" and the fallback colours where the config has none)."""
        stuff = set(self.stuff_classes)
        return ClassTable(tuple(ClassInfo(i, self.class_name(i), i not in stuff, color)
                                for i, color in enumerate(self.colors())))

    def colors(self) -> list[tuple[int, int, int]]:
        """One RGB colour per class: the configured palette, else a fixed pseudo-random one."""
        if self.class_colors:
            return list(self.class_colors)
        # A multiplicative hash spreads neighbouring ids over the colour cube and never changes between runs.
        return [((i * 2654435761) >> 8 & 255, (i * 2246822519) >> 8 & 255, (i * 3266489917) >> 8 & 255)
                for i in range(1, self.num_classes + 1)]
