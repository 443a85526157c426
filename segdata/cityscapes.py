"""Cityscapes (fine annotations), read straight from the two zips the dataset's site distributes, or from their
extracted folders:

    zips        leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip
    extracted   leftImg8bit/<split>/<city>/ + gtFine/<split>/<city>/   (one of each kind may also be a zip)

Members: `leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png` and, beside them under `gtFine/`,
`..._gtFine_labelIds.png` (8-bit label ids 0..33) and `..._gtFine_instanceIds.png` (16-bit: a label id below
1000, label id * 1000 + k for instance k). The 34 label ids map to the 19 train ids; every other id is ignored
(255). Semantic ground truth comes from labelIds. Panoptic ground truth, when instanceIds are there, is built as
cityscapesScripts' createPanopticImgs builds it: one segment per id of the instanceIds map whose label has a
train id, the thing-class ids below 1000 (groups such as "cars") as crowd segments, everything else void.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from eomt.classes import ClassInfo, cityscapes_classes
from eomt.images import to_rgb_image
from metrics.coco_panoptic import areas_and_bboxes
from metrics.semantic import IGNORE
from segdata.sample import Sample, split_name
from segdata.sources import DatasetError, FolderSource, ZipSource, decode_image, join

IMAGES_ZIP = "leftImg8bit_trainvaltest.zip"
LABELS_ZIP = "gtFine_trainvaltest.zip"
IMAGES_TOP, LABELS_TOP = "leftImg8bit", "gtFine"
SPLITS = ("val", "train")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"

# Label id -> train id of the 19 evaluation classes (cityscapesScripts' labels.py); the rest are ignored.
TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
            27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34  # 0..33; the license plate's -1 never appears in the PNGs
INSTANCE_LABELS = frozenset(range(24, 34))  # labels with instances: person .. bicycle, caravan and trailer too
INSTANCE_OFFSET = 1000


def _train_id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label, train_id in TRAIN_ID.items():
        lut[label] = train_id
    return lut


_TRAIN_ID_LUT = _train_id_lut()


def looks_like(root: Path) -> bool:
    """Whether `root` holds Cityscapes images (the zip or the extracted folder)."""
    return (root / IMAGES_ZIP).is_file() or (root / IMAGES_TOP).is_dir()


LOOKED_FOR = f"{IMAGES_ZIP} + {LABELS_ZIP}, or {IMAGES_TOP}/<split>/<city>/ + {LABELS_TOP}/<split>/<city>/"


def _source(root: Path, zip_name: str, folder: str):
    if (root / zip_name).is_file():
        return ZipSource(root / zip_name)
    if (root / folder).is_dir():
        return FolderSource(root)
    return None


class Cityscapes:
    """The fine-annotated images of one split, in (city, file name) order, with semantic ground truth (19 train
    ids, 255 ignored) and, where the instanceIds PNGs are there, panoptic ground truth. An image whose file or
    annotation is missing or unreadable raises DatasetError when it is read; the others stay readable."""

    name = "cityscapes"
    has_ground_truth = True

    def __init__(self, root: str | os.PathLike, split: str = "val"):
        self.root, self.split = Path(root), split_name(split, SPLITS)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder (expected one holding {IMAGES_ZIP} and {LABELS_ZIP})")
        self._images = _source(self.root, IMAGES_ZIP, IMAGES_TOP)
        self._labels = _source(self.root, LABELS_ZIP, LABELS_TOP)
        if self._images is None or self._labels is None:
            raise DatasetError(f"{self.root}: no Cityscapes found. Looked for {LOOKED_FOR}")
        self.layout = "zip" if isinstance(self._images, ZipSource) else "extracted"
        self._image_folder = join(IMAGES_TOP, self.split)
        self._label_folder = join(LABELS_TOP, self.split)

        images = {key: member for key, member in self._images.files(self._image_folder, recursive=True).items()
                  if key.endswith(IMAGE_SUFFIX) and key.count("/") == 1}  # <city>/<name>
        if not images:
            raise DatasetError(f"{self._images.where(self._image_folder)}: no images "
                               f"(<city>/*{IMAGE_SUFFIX}) for split {self.split!r}")
        self.keys = sorted(images)
        self.stems = [key.split("/")[1][: -len(IMAGE_SUFFIX)] for key in self.keys]
        self._image_members = [images[key] for key in self.keys]
        labels = self._labels.files(self._label_folder, recursive=True)
        self.tasks = frozenset({"semantic", "panoptic"} if any(k.endswith(INSTANCE_IDS_SUFFIX) for k in labels)
                               else {"semantic"})

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return cityscapes_classes()

    @property
    def image_ids(self) -> list[int]:
        return list(range(len(self.keys)))

    def __len__(self) -> int:
        return len(self.keys)

    def _label_member(self, index: int, suffix: str) -> str:
        city = self.keys[index].split("/")[0]
        return join(self._label_folder, city, self.stems[index] + suffix)

    def read_image(self, index: int) -> Image.Image:
        """The RGB image."""
        return to_rgb_image(decode_image(self._images, self._image_members[index]))

    def read_label_ids(self, index: int) -> np.ndarray:
        """The labelIds PNG as stored: (H, W) uint8 Cityscapes label ids 0..33."""
        member = self._label_member(index, LABEL_IDS_SUFFIX)
        png = decode_image(self._labels, member)
        if png.mode != "L":
            raise DatasetError(f"{self._labels.where(member)}: a labelIds annotation must be an 8-bit "
                               f"single-channel PNG, this one is mode {png.mode}")
        label_ids = np.asarray(png, dtype=np.uint8)
        if label_ids.max(initial=0) >= NUM_LABEL_IDS:
            unknown = np.unique(label_ids[label_ids >= NUM_LABEL_IDS]).tolist()
            raise DatasetError(f"{self._labels.where(member)}: values {unknown} are not Cityscapes label ids "
                               f"(0..{NUM_LABEL_IDS - 1})")
        return label_ids

    def semantic(self, index: int) -> np.ndarray:
        """(H, W) uint8 train ids 0..18, 255 for every label id outside the 19 evaluation classes."""
        return np.take(_TRAIN_ID_LUT, self.read_label_ids(index))

    def read_instance_ids(self, index: int) -> np.ndarray:
        """The instanceIds PNG as stored: (H, W) int32, label id or label id * 1000 + instance number."""
        member = self._label_member(index, INSTANCE_IDS_SUFFIX)
        png = decode_image(self._labels, member)
        if png.mode not in ("I", "I;16", "I;16B", "L"):
            raise DatasetError(f"{self._labels.where(member)}: an instanceIds annotation must be a single-channel "
                               f"PNG, this one is mode {png.mode}")
        return np.asarray(png).astype(np.int32)

    def panoptic(self, index: int) -> tuple[np.ndarray, list[dict]]:
        """(segment_map (H, W) int32 with 0 = void, segments); segment ids are the instanceIds values."""
        if "panoptic" not in self.tasks:
            raise DatasetError(f"{self._labels.where(self._label_folder)}: no *{INSTANCE_IDS_SUFFIX} files, so no "
                               "panoptic ground truth")
        ids = self.read_instance_ids(index)
        try:
            return build_panoptic(ids)
        except ValueError as e:
            raise DatasetError(f"{self._labels.where(self._label_member(index, INSTANCE_IDS_SUFFIX))}: {e}") from None

    def sample(self, index: int) -> Sample:
        """The image with its semantic (and panoptic, when there is one) ground truth."""
        image = self.read_image(index)
        semantic = self.semantic(index)
        segment_map, segments = self.panoptic(index) if "panoptic" in self.tasks else (None, None)
        for what, array, suffix in (("labelIds", semantic, LABEL_IDS_SUFFIX),
                                    ("instanceIds", segment_map, INSTANCE_IDS_SUFFIX)):
            if array is not None and array.shape != (image.height, image.width):
                raise DatasetError(f"{self._labels.where(self._label_member(index, suffix))}: {what} annotation is "
                                   f"{array.shape[1]}x{array.shape[0]}, the image is {image.width}x{image.height}")
        return Sample(self.stems[index], image, segment_map, segments, semantic)

    __getitem__ = sample


def build_panoptic(instance_ids: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Panoptic ground truth from an instanceIds map (see the module docstring); ValueError for ids that name no
    label or an instance of a label without instances."""
    ids = instance_ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= NUM_LABEL_IDS * INSTANCE_OFFSET):
        raise ValueError(f"ids must be label ids or label id * 1000 + k, found {int(ids.min())}..{int(ids.max())}")
    present = np.flatnonzero(np.bincount(ids.ravel(), minlength=1))
    labels = np.where(present < INSTANCE_OFFSET, present, present // INSTANCE_OFFSET)
    bad = present[(present < INSTANCE_OFFSET) & (labels >= NUM_LABEL_IDS)
                  | (present >= INSTANCE_OFFSET) & ~np.isin(labels, list(INSTANCE_LABELS))]
    if bad.size:
        raise ValueError(f"ids {bad[:8].tolist()} are neither label ids (0..33) nor instances of a label with "
                         "instances (24..33) * 1000 + k")
    kept = [(int(v), TRAIN_ID[int(label)]) for v, label in zip(present, labels, strict=True) if int(label) in TRAIN_ID]
    keep = np.zeros(int(present[-1]) + 1 if present.size else 1, dtype=bool)
    keep[[v for v, _ in kept]] = True
    segment_map = np.where(keep[ids], ids, 0).astype(np.int32)
    classes = cityscapes_classes()
    areas, bboxes = areas_and_bboxes(segment_map, [v for v, _ in kept])
    return segment_map, [
        {"id": v, "category_id": train_id, "isthing": classes[train_id].isthing,
         "iscrowd": int(classes[train_id].isthing and v < INSTANCE_OFFSET), "area": area, "bbox": bbox}
        for (v, train_id), area, bbox in zip(kept, areas, bboxes, strict=True)]
