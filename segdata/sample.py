"""What every dataset reader offers, whatever the dataset (ADE20K, COCO, Cityscapes, a folder of photos).

A reader has:

    name        "ade20k" | "coco" | "cityscapes" | "images"
    split       the split's own name ("validation", "val2017", "val"; None for a photo folder)
    classes     tuple of eomt.classes.ClassInfo, index = contiguous class id (what the models predict)
    tasks       frozenset, the ground truths it has: a subset of TASKS
    keys, stems file names (or paths inside the split) and stems, in the reader's fixed order
    image_ids   the ids COCO-format files use for the images (COCO: the JSON's ids; others: the index)
    len(reader), read_image(i) -> PIL RGB image
    panoptic(i) -> (segment_map (H, W) int32 with 0 = void, segments)      if "panoptic" in tasks
                   segments: [{"id", "category_id" (contiguous), "isthing", "iscrowd", "area", "bbox"}]
    semantic(i) -> (H, W) uint8 class map, IGNORE (255) where unlabeled    if "semantic" in tasks
    instances(i) -> COCO annotations of the image, contiguous category ids if "instance" in tasks
    sample(i)   -> Sample: the image and every ground truth of `tasks`

Per-image reads raise DatasetError naming the file (or `<zip>:<member>`) when it is missing or unusable; the other
images stay readable. Readers pickle cheaply (DataLoader workers) and reopen their zips in each process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

TASKS = ("panoptic", "semantic", "instance")
IGNORE = 255  # semantic maps: unlabeled pixels
GENERIC_SPLITS = {"validation": 0, "training": 1}  # the names predict_dump uses, mapped to a reader's splits


@dataclass
class Sample:
    """One image and its ground truths; a field is None when the dataset has no ground truth of that task."""

    stem: str
    image: Image.Image  # RGB
    segment_map: np.ndarray | None = None  # (H, W) int32 panoptic segment ids, 0 = void
    segments: list[dict] | None = None  # {"id", "category_id", "isthing", "iscrowd", "area", "bbox"}
    semantic: np.ndarray | None = None  # (H, W) uint8 class ids, 255 = ignore
    instances: list[dict] | None = None  # COCO annotations, contiguous category ids


def split_name(split: str, splits: tuple[str, ...]) -> str:
    """A dataset's own split name for `split`, given as that name or as "validation"/"training" (the first and
    second of `splits`); ValueError listing the choices otherwise."""
    if split in splits:
        return split
    if split in GENERIC_SPLITS and GENERIC_SPLITS[split] < len(splits):
        return splits[GENERIC_SPLITS[split]]
    choices = list(splits) + [s for s in GENERIC_SPLITS if s not in splits]
    raise ValueError(f"split must be one of {tuple(choices)}, got {split!r}")
