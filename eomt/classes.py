"""Class tables (ids, names, thing/stuff, palette) of the datasets the published checkpoints were trained on.

Plain Python and numpy only: the dataset reader and the renderers use these without building a model.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_DATA = Path(__file__).with_name("data")


@dataclass(frozen=True)
class ClassInfo:
    id: int  # contiguous class id, the index of the model's class logit
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ADE20KClass(ClassInfo):
    semantic_value: int  # value in the semantic annotation PNG (id + 1)
    instance_red: int | None  # R value of this thing class in the instance PNG; None for stuff


@lru_cache(maxsize=1)
def ade20k_classes() -> tuple[ADE20KClass, ...]:
    """The 150 ADE20K panoptic classes in id order (100 things, 50 stuff)."""
    with open(_DATA / "ade20k_panoptic_classes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = tuple(
        ADE20KClass(
            id=int(r["id"]),
            name=r["name"],
            isthing=r["isthing"] == "1",
            color=(int(r["r"]), int(r["g"]), int(r["b"])),
            semantic_value=int(r["semantic_png_value"]),
            instance_red=int(r["instance_png_red_value"]) if r["instance_png_red_value"] else None,
        )
        for r in rows
    )
    assert [c.id for c in classes] == list(range(150)), "class table must list ids 0..149 in order"
    return classes
