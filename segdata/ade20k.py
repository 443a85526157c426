"""ADE20K panoptic validation/training data, read straight from the two zips users have (or their extracted folders).

Accepted layouts of `root` (as the dataset is distributed, or as users extract it):

    zips          ADEChallengeData2016.zip + annotations_instance.zip
    EoMT          ADEChallengeData2016/{images,annotations}/<split>/ + annotations_instance/<split>/
    Mask2Former   ADEChallengeData2016/{images,annotations,annotations_instance}/<split>/
    (root may also be the ADEChallengeData2016 folder itself)

Without any instance annotations (no zip, no folder) thing pixels are void: what the panoptic ground truth of a
semantic-only sample is. With them, an image whose instance PNG is missing is an error. The panoptic ground truth is built as Mask2Former and EoMT build it
(section 2): stuff segments from the semantic PNG, thing segments from the instance PNG painted over them,
everything else void, areas counted after painting.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from eomt.classes import ADE20KClass, ade20k_classes
from eomt.images import to_rgb_image
from metrics.coco_panoptic import areas_and_bboxes
from metrics.semantic import ade20k_labels
from segdata.sample import Sample
from segdata.sources import DatasetError, FolderSource, ZipSource, decode_image, join

__all__ = ["ADE20K", "ADE20KSample", "DatasetError", "build_panoptic"]

IMAGES_ZIP = "ADEChallengeData2016.zip"
INSTANCES_ZIP = "annotations_instance.zip"
TOP = "ADEChallengeData2016"
INSTANCE_TOP = "annotations_instance"
SPLITS = ("validation", "training")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


LOOKED_FOR = f"{IMAGES_ZIP} (+ {INSTANCES_ZIP}) or {TOP}/images/ + {TOP}/annotations/"


def looks_like(root: Path) -> bool:
    """Whether `root` holds ADE20K (the zip, or one of the extracted layouts)."""
    return (root / IMAGES_ZIP).is_file() or (root / TOP / "images").is_dir() or (
        (root / "images").is_dir() and (root / "annotations").is_dir())


def _find_sources(root: Path):
    """(main source, its top folder, instance source or None, its top folder, layout name)."""
    if (root / IMAGES_ZIP).is_file():
        main, top, layout = ZipSource(root / IMAGES_ZIP), TOP, "zip"
    elif (root / TOP / "images").is_dir():
        main, top, layout = FolderSource(root), TOP, "extracted"
    elif (root / "images").is_dir() and (root / "annotations").is_dir():
        main, top, layout = FolderSource(root), "", "extracted"
    else:
        raise DatasetError(
            f"{root}: no ADE20K found. Looked for {root / IMAGES_ZIP} (with {INSTANCES_ZIP} beside it), for the "
            f"extracted {root / TOP}/images/ and {root / TOP}/annotations/, and for {root}/images/ + "
            f"{root}/annotations/ (root being the {TOP} folder itself)")
    if (root / INSTANCES_ZIP).is_file():
        return main, top, ZipSource(root / INSTANCES_ZIP), INSTANCE_TOP, layout
    if (root / INSTANCE_TOP).is_dir():  # EoMT layout, or Mask2Former's with root = ADEChallengeData2016
        return main, top, FolderSource(root), INSTANCE_TOP, layout
    if top and (root / top / INSTANCE_TOP).is_dir():  # Mask2Former layout
        return main, top, FolderSource(root), join(top, INSTANCE_TOP), layout
    return main, top, None, None, layout


@dataclass
class ADE20KSample:
    stem: str
    image: Image.Image  # RGB
    segment_map: np.ndarray  # (H, W) int32 panoptic segment ids, 0 = void
    segments: list[dict]  # {"id", "category_id", "isthing", "area", "bbox": [x, y, w, h], "iscrowd": 0}
    semantic: np.ndarray  # (H, W) uint8, the semantic PNG as stored (0 = unlabeled, v = class v - 1)


def _lookup_tables():
    classes = ade20k_classes()
    class_of_value = np.full(256, -1, dtype=np.int64)  # semantic PNG value -> class id
    stuff_value = np.zeros(256, dtype=bool)
    class_of_red = np.full(256, -1, dtype=np.int64)  # instance PNG R -> thing class id
    for c in classes:
        class_of_value[c.semantic_value] = c.id
        stuff_value[c.semantic_value] = not c.isthing
        if c.instance_red is not None:
            class_of_red[c.instance_red] = c.id
    return class_of_value, stuff_value, class_of_red


_CLASS_OF_VALUE, _STUFF_VALUE, _CLASS_OF_RED = _lookup_tables()
_THING_KEY = 256  # segment keys: 1..150 = stuff by semantic value, 256 + G = thing instance G


def build_panoptic(semantic: np.ndarray, instance: np.ndarray | None) -> tuple[np.ndarray, list[dict]]:
    """Panoptic ground truth from a semantic PNG (H, W) and an instance PNG (H, W, 3) or None.

    Segment ids are 1..n: stuff segments in class order, then thing segments in instance-index order.
    Raises ValueError for an instance whose pixels do not carry one thing category in R.
    """
    key = np.where(_STUFF_VALUE[semantic], semantic, 0).astype(np.int32)

    thing_class: dict[int, int] = {}
    if instance is not None:
        red, index = instance[..., 0], instance[..., 1].astype(np.int32)
        on_instance = index > 0
        # Every pixel of an instance must carry the same R, and R must name a thing class.
        pairs = np.unique(index[on_instance] * 256 + red[on_instance])
        for g, r in zip((pairs // 256).tolist(), (pairs % 256).tolist(), strict=True):
            if g in thing_class or _CLASS_OF_RED[r] < 0:
                raise ValueError(f"instance {g} (G channel) has R values that are not one thing category "
                                 f"(R = {sorted(int(p % 256) for p in pairs if p // 256 == g)})")
            thing_class[g] = int(_CLASS_OF_RED[r])
        key[on_instance] = _THING_KEY + index[on_instance]  # things painted over stuff

    area_of_key = np.bincount(key.ravel(), minlength=_THING_KEY + 256)
    keys = np.flatnonzero(area_of_key[1:]) + 1  # stuff keys sort before thing keys
    id_of_key = np.zeros(len(area_of_key), dtype=np.int32)
    id_of_key[keys] = np.arange(1, len(keys) + 1)
    segment_map = id_of_key[key]
    ids = list(range(1, len(keys) + 1))
    areas, bboxes = areas_and_bboxes(segment_map, ids)
    segments = []
    for segment_id, k, area, bbox in zip(ids, keys.tolist(), areas, bboxes, strict=True):
        isthing = k >= _THING_KEY
        category_id = thing_class[k - _THING_KEY] if isthing else int(_CLASS_OF_VALUE[k])
        segments.append({"id": segment_id, "category_id": category_id, "isthing": isthing, "area": area,
                         "bbox": bbox, "iscrowd": 0})
    return segment_map, segments


class ADE20K:
    """The images of one split in file-name order, with their panoptic and semantic ground truth (the reader
    interface of segdata.sample; `__getitem__` gives an ADE20KSample with the semantic PNG as stored).

    `skip_constant=True` leaves out images whose semantic PNG has a single value, as the official EoMT validation
    does (it then reads every semantic PNG once here); the default keeps all, as Mask2Former does. An image whose
    file or annotation is missing or unreadable raises DatasetError when it is read; the others stay readable.
    """

    name = "ade20k"
    tasks = frozenset({"panoptic", "semantic"})
    has_ground_truth = True

    def __init__(self, root: str | os.PathLike, split: str = "validation", skip_constant: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split = Path(root), split
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder (expected one holding {IMAGES_ZIP} and {INSTANCES_ZIP})")
        self._source, top, self._instance_source, instance_top, self.layout = _find_sources(self.root)
        self._image_folder = join(top, "images", split)
        self._annotation_folder = join(top, "annotations", split)
        self._instance_folder = join(instance_top, split) if self._instance_source else None

        images = {name: member for name, member in self._source.files(self._image_folder).items()
                  if name.lower().endswith(IMAGE_SUFFIXES)}
        if not images:
            raise DatasetError(f"{self._source.where(self._image_folder)}: no images (.jpg) for split {split!r}")
        self.keys = sorted(images)  # image file names
        self.stems = [Path(name).stem for name in self.keys]
        self._image_members = [images[name] for name in self.keys]
        self._annotations = self._source.files(self._annotation_folder)
        self._instances = self._instance_source.files(self._instance_folder) if self._instance_source else {}
        self.has_instances = self._instance_source is not None
        if not self.has_instances:
            warnings.warn(f"{self.root}: no {INSTANCES_ZIP} or {INSTANCE_TOP}/ found: thing classes will be void "
                          "in the panoptic ground truth", stacklevel=2)
        if skip_constant:
            keep = [i for i in range(len(self.stems)) if not self._constant_or_unreadable(i)]
            self.keys = [self.keys[i] for i in keep]
            self.stems = [self.stems[i] for i in keep]
            self._image_members = [self._image_members[i] for i in keep]

    @property
    def classes(self) -> tuple[ADE20KClass, ...]:
        return ade20k_classes()

    @property
    def image_ids(self) -> list[int]:
        return list(range(len(self.stems)))

    def __len__(self) -> int:
        return len(self.stems)

    def read_image(self, index: int) -> Image.Image:
        """The RGB image (grayscale and CMYK JPEGs converted). EXIF orientation is not applied: the annotations
        are aligned with the stored pixels."""
        return to_rgb_image(decode_image(self._source, self._image_members[index]))

    def _semantic_member(self, index: int) -> str:
        name = f"{self.stems[index]}.png"
        return self._annotations.get(name, f"{self._annotation_folder}/{name}")

    def read_semantic(self, index: int) -> np.ndarray:
        """The semantic PNG as stored: (H, W) uint8, 0 = unlabeled, v = class v - 1."""
        member = self._semantic_member(index)
        png = decode_image(self._source, member)
        if png.mode not in ("L", "P"):
            raise DatasetError(f"{self._source.where(member)}: a semantic annotation must be a single-channel "
                               f"8-bit PNG, this one is mode {png.mode}")
        semantic = np.asarray(png, dtype=np.uint8)
        if semantic.max(initial=0) > len(ade20k_classes()):
            unknown = sorted(set(np.unique(semantic).tolist()) - set(range(len(ade20k_classes()) + 1)))
            raise DatasetError(f"{self._source.where(member)}: values {unknown} are not ADE20K classes "
                               "(0 = unlabeled, 1..150)")
        return semantic

    def _instance_where(self, index: int) -> str:
        return self._instance_source.where(self._instances[f"{self.stems[index]}.png"])

    def _read_instance(self, index: int) -> np.ndarray | None:
        """The instance PNG, or None when the data has no instance annotations at all (things are void then).
        With instance annotations, every image has its PNG (all zeros without things): a missing one is an
        error, or its things would silently become void and change PQ."""
        if self._instance_source is None:
            return None
        name = f"{self.stems[index]}.png"
        member = self._instances.get(name)
        if member is None:
            raise DatasetError(f"{self._instance_source.where(join(self._instance_folder, name))}: missing (the "
                               f"instance annotation of {self.keys[index]})")
        png = decode_image(self._instance_source, member)
        if png.mode not in ("RGB", "RGBA"):
            raise DatasetError(f"{self._instance_where(index)}: an instance annotation must be an RGB PNG, "
                               f"this one is mode {png.mode}")
        return np.asarray(png.convert("RGB"))

    def is_constant(self, index: int) -> bool:
        """Whether the semantic PNG holds a single value (the images the official EoMT validation skips)."""
        semantic = self.read_semantic(index)
        return bool(semantic.min() == semantic.max())

    def _constant_or_unreadable(self, index: int) -> bool:
        try:
            return self.is_constant(index)
        except DatasetError:
            return False  # kept, so that reading it reports the problem

    def _panoptic(self, index: int, semantic: np.ndarray, size: tuple[int, int] | None):
        """Segment map and segments; `size` (H, W) is the image's when it was read, else the semantic map's."""
        instance = self._read_instance(index)
        against = f"the image is {size[1]}x{size[0]}" if size else "the semantic annotation is {}x{}".format(
            *semantic.shape[::-1])
        size = size or semantic.shape
        if semantic.shape != size:
            raise DatasetError(f"{self._source.where(self._semantic_member(index))}: annotation is "
                               f"{semantic.shape[1]}x{semantic.shape[0]}, {against}")
        if instance is not None and instance.shape[:2] != size:
            raise DatasetError(f"{self._instance_where(index)}: annotation is {instance.shape[1]}x"
                               f"{instance.shape[0]}, {against}")
        try:
            return build_panoptic(semantic, instance)
        except ValueError as e:  # only the instance PNG can be inconsistent
            raise DatasetError(f"{self._instance_where(index)}: {e}") from None

    def panoptic(self, index: int) -> tuple[np.ndarray, list[dict]]:
        """(segment_map (H, W) int32 with 0 = void, segments) as Mask2Former and EoMT build them."""
        return self._panoptic(index, self.read_semantic(index), None)

    def semantic(self, index: int) -> np.ndarray:
        """(H, W) uint8 class ids, 255 where the PNG says unlabeled (value v is class v - 1)."""
        return ade20k_labels(self.read_semantic(index))

    def __getitem__(self, index: int) -> ADE20KSample:
        image = self.read_image(index)
        semantic = self.read_semantic(index)
        segment_map, segments = self._panoptic(index, semantic, (image.height, image.width))
        return ADE20KSample(self.stems[index], image, segment_map, segments, semantic)

    def sample(self, index: int) -> Sample:
        """The image with its panoptic and semantic ground truth (semantic as class ids, 255 = unlabeled)."""
        ade = self[index]
        return Sample(ade.stem, ade.image, ade.segment_map, ade.segments, ade20k_labels(ade.semantic))
