"""COCO 2017 (panoptic and instance annotations), read straight from the zips the dataset's site distributes, as
the official EoMT code does, or from their extracted folders (datasets-reference.md):

    images      val2017.zip (`val2017/<file_name>`)                  or val2017/
    panoptic    panoptic_annotations_trainval2017.zip: `annotations/panoptic_val2017.json` and the zip inside
                the zip `annotations/panoptic_val2017.zip` (`panoptic_val2017/<png>`)
                                                                      or annotations/panoptic_val2017.json with the
                PNGs in panoptic_val2017/, annotations/panoptic_val2017/ or annotations/panoptic_val2017.zip
    instance    annotations_trainval2017.zip: `annotations/instances_val2017.json`
                                                                      or annotations/instances_val2017.json

Either annotation set may be missing (not both). Category ids in the files run 1..200 with gaps; everything this
reader returns uses the contiguous ids the models predict (eomt.classes: 133 panoptic classes, things first, so
the 80 instance classes are ids 0..79 in both), and `coco_ground_truth` gives back the file's own ids for
pycocotools.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from eomt.classes import COCOClass, coco_instance_classes, coco_panoptic_classes
from eomt.images import to_rgb_image
from metrics import pq
from metrics.coco_panoptic import rgb2id
from metrics.semantic import semantic_from_panoptic
from segdata.sample import Sample, split_name
from segdata.sources import DatasetError, FolderSource, ZipSource, decode_image, join, read_json

SPLITS = ("val2017", "train2017")
PANOPTIC_ZIP = "panoptic_annotations_trainval2017.zip"
INSTANCES_ZIP = "annotations_trainval2017.zip"
ANNOTATIONS = "annotations"

LOOKED_FOR = (f"<split>.zip or <split>/ (images) with {PANOPTIC_ZIP} or {ANNOTATIONS}/panoptic_<split>.json "
              f"(+ PNGs), and/or {INSTANCES_ZIP} or {ANNOTATIONS}/instances_<split>.json")


def looks_like(root: Path) -> bool:
    """Whether `root` holds COCO annotations (a zip or the extracted annotations folder)."""
    return any((root / name).is_file() for name in (PANOPTIC_ZIP, INSTANCES_ZIP)) or any(
        (root / ANNOTATIONS / f"{kind}_{split}.json").is_file() for kind in ("panoptic", "instances")
        for split in SPLITS)


def _in_zip_or_folder(root: Path, zip_name: str, member: str):
    """(source, member) of a file that is `member` of root/zip_name, or root/member; None if neither."""
    if (root / zip_name).is_file():
        source = ZipSource(root / zip_name)
        if source.has(member):
            return source, member
    if (root / member).is_file():
        return FolderSource(root), member
    return None


def _panoptic_pngs(root: Path, split: str, json_source) -> tuple[ZipSource | FolderSource, str]:
    """Where the panoptic PNGs are: (source, folder)."""
    folder = f"panoptic_{split}"
    inner = f"{ANNOTATIONS}/{folder}.zip"
    if isinstance(json_source, ZipSource) and json_source.has(inner):
        return ZipSource(json_source.path, inner=inner), folder
    for candidate in (folder, f"{ANNOTATIONS}/{folder}"):
        if (root / candidate).is_dir():
            return FolderSource(root), candidate
    if (root / inner).is_file():
        return ZipSource(root / inner), folder
    raise DatasetError(f"{root}: panoptic_{split}.json found but not its PNGs: looked for {inner} inside "
                       f"{PANOPTIC_ZIP}, for {root / folder}/, {root / ANNOTATIONS / folder}/ and {root / inner}")


def _document(source, member: str) -> dict:
    document = read_json(source, member)
    if not isinstance(document, dict) or not all(isinstance(document.get(k), list)
                                                 for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{source.where(member)}: a COCO annotation file needs 'images', 'annotations' and "
                           "'categories' lists")
    for image in document["images"]:
        if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= image.keys() \
                or not isinstance(image["file_name"], str):
            raise DatasetError(f"{source.where(member)}: every image needs 'id', 'file_name' (a string), 'width' "
                               "and 'height'")
    return document


def _contiguous_ids(document: dict, classes: Sequence[COCOClass], where: str) -> dict[int, int]:
    """{file category id: contiguous id}; DatasetError for a category that is not one of `classes`."""
    by_coco_id = {c.coco_id: c.id for c in classes}
    mapping = {}
    for category in document["categories"]:
        coco_id = category.get("id") if isinstance(category, dict) else None
        if coco_id not in by_coco_id:
            raise DatasetError(f"{where}: category {coco_id} ({category.get('name') if coco_id else category}) is "
                               f"not one of the {len(classes)} COCO categories this reader knows")
        mapping[coco_id] = by_coco_id[coco_id]
    return mapping


class COCO:
    """The images of one split (val2017 by default) in file-name order, with the ground truths the annotation
    files give: panoptic and semantic (from the panoptic PNGs), instance (from instances_<split>.json).

    An image whose file or annotation is missing or unusable raises DatasetError when it is read (the message
    names `<zip>:<member>`); the others stay readable.
    """

    name = "coco"
    has_ground_truth = True

    def __init__(self, root: str | os.PathLike, split: str = "val2017"):
        self.root, self.split = Path(root), split_name(split, SPLITS)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: not a folder (expected one holding {self.split}.zip and {PANOPTIC_ZIP})")
        panoptic_json = _in_zip_or_folder(self.root, PANOPTIC_ZIP, f"{ANNOTATIONS}/panoptic_{self.split}.json")
        instances_json = _in_zip_or_folder(self.root, INSTANCES_ZIP, f"{ANNOTATIONS}/instances_{self.split}.json")
        if panoptic_json is None and instances_json is None:
            raise DatasetError(f"{self.root}: no COCO annotations for {self.split}. Looked for {LOOKED_FOR}")
        if (self.root / f"{self.split}.zip").is_file():
            self._images, self.layout = ZipSource(self.root / f"{self.split}.zip"), "zip"
        elif (self.root / self.split).is_dir():
            self._images, self.layout = FolderSource(self.root), "extracted"
        else:
            raise DatasetError(f"{self.root}: COCO annotations but no images: looked for {self.split}.zip and "
                               f"{self.split}/")

        tasks, image_entries = set(), None
        self._panoptic, self._instances = {}, {}
        if panoptic_json is not None:
            self._panoptic_where = panoptic_json[0].where(panoptic_json[1])
            document = _document(*panoptic_json)
            self._panoptic_ids = _contiguous_ids(document, coco_panoptic_classes(), self._panoptic_where)
            self._pngs, self._png_folder = _panoptic_pngs(self.root, self.split, panoptic_json[0])
            self._panoptic = {a.get("image_id"): a for a in document["annotations"] if isinstance(a, dict)}
            image_entries = document["images"]
            tasks |= {"panoptic", "semantic"}
        if instances_json is not None:
            self._instances_where = instances_json[0].where(instances_json[1])
            document = _document(*instances_json)
            self._instance_ids = _contiguous_ids(document, coco_instance_classes(), self._instances_where)
            self._categories = document["categories"]
            self._instance_images = {image["id"]: image for image in document["images"]}
            self._instances = {image_id: [] for image_id in self._instance_images}
            for annotation in document["annotations"]:
                image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
                self._instances.setdefault(image_id, []).append(annotation)
            image_entries = image_entries if image_entries is not None else document["images"]
            tasks.add("instance")
        self.tasks = frozenset(tasks)
        self._classes = coco_panoptic_classes() if "panoptic" in tasks else coco_instance_classes()

        entries = sorted(image_entries, key=lambda image: image["file_name"])
        self.keys = [image["file_name"] for image in entries]
        self.stems = [Path(name).stem for name in self.keys]
        self.image_ids = [image["id"] for image in entries]
        self._sizes = [(image["height"], image["width"]) for image in entries]

    @property
    def classes(self) -> tuple[COCOClass, ...]:
        """133 panoptic classes when the panoptic annotations are there, else the 80 instance classes."""
        return self._classes

    def __len__(self) -> int:
        return len(self.keys)

    def read_image(self, index: int) -> Image.Image:
        """The RGB image (grayscale JPEGs converted). EXIF orientation is not applied, as in the annotations."""
        return to_rgb_image(decode_image(self._images, join(self.split, self.keys[index])))

    def _require(self, task: str) -> None:
        if task not in self.tasks:
            raise DatasetError(f"{self.root}: no {task} annotations for {self.split} (found: {sorted(self.tasks)})")

    def panoptic(self, index: int) -> tuple[np.ndarray, list[dict]]:
        """(segment_map (H, W) int32 as in the PNG, 0 = void; segments with contiguous category ids, isthing,
        iscrowd, and area and bbox as the JSON gives them)."""
        self._require("panoptic")
        image_id = self.image_ids[index]
        annotation = self._panoptic.get(image_id)
        if annotation is None or not isinstance(annotation.get("segments_info"), list) \
                or "file_name" not in annotation:
            raise DatasetError(f"{self._panoptic_where}: no usable annotation (file_name, segments_info) for image "
                               f"{image_id} ({self.keys[index]})")
        member = join(self._png_folder, annotation["file_name"])
        png = decode_image(self._pngs, member)
        where = self._pngs.where(member)
        if png.mode not in ("RGB", "RGBA"):
            raise DatasetError(f"{where}: a panoptic PNG must be RGB, this one is mode {png.mode}")
        segment_map = rgb2id(np.asarray(png.convert("RGB")))
        if segment_map.shape != self._sizes[index]:
            raise DatasetError(f"{where}: annotation is {segment_map.shape[1]}x{segment_map.shape[0]}, the image is "
                               f"{self._sizes[index][1]}x{self._sizes[index][0]}")
        classes = coco_panoptic_classes()
        segments = []
        for info in annotation["segments_info"]:
            try:
                category = classes[self._panoptic_ids[info["category_id"]]]
                segments.append({"id": int(info["id"]), "category_id": category.id, "isthing": category.isthing,
                                 "iscrowd": int(info.get("iscrowd", 0)), "area": int(info["area"]),
                                 "bbox": [int(v) for v in info["bbox"]]})
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{self._panoptic_where}: image {image_id}: segment {info} needs an id, a known "
                                   "category_id, area and bbox") from None
        ids = np.array([s["id"] for s in segments], dtype=np.int64)
        unknown = pq.segment_indices(segment_map, ids, unknown=-1) < 0
        if unknown.any():
            stray = np.unique(segment_map.ravel()[unknown])[:8].tolist()
            raise DatasetError(f"{where}: segment ids {stray} are in the PNG but not in the image's segments_info")
        return segment_map, segments

    def semantic(self, index: int) -> np.ndarray:
        """(H, W) uint8 contiguous class ids from the panoptic ground truth (crowd regions carry their class, as
        in Mask2Former's semantic COCO), 255 on void."""
        return semantic_from_panoptic(*self.panoptic(index))

    def instances(self, index: int) -> list[dict]:
        """The image's COCO instance annotations with contiguous category ids: {"id", "image_id", "category_id",
        "iscrowd", "area", "bbox", "segmentation" (polygons or RLE, as in the file)}."""
        self._require("instance")
        image_id = self.image_ids[index]
        if image_id not in self._instance_images:
            raise DatasetError(f"{self._instances_where}: image {image_id} ({self.keys[index]}) is not listed")
        result = []
        for annotation in self._instances[image_id]:
            try:
                result.append({"id": annotation["id"], "image_id": image_id,
                               "category_id": self._instance_ids[annotation["category_id"]],
                               "iscrowd": int(annotation.get("iscrowd", 0)), "area": float(annotation["area"]),
                               "bbox": annotation.get("bbox"), "segmentation": annotation["segmentation"]})
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{self._instances_where}: image {image_id}: annotation {annotation.get('id')} "
                                   "needs an id, a known category_id, area and segmentation") from None
        return result

    def coco_ground_truth(self, indices: Sequence[int] | None = None) -> dict:
        """The instance annotation file cut down to the images `indices` (all by default), with the file's own
        image and category ids: what pycocotools' COCO() and metrics.instance.mask_ap take."""
        self._require("instance")
        indices = range(len(self)) if indices is None else indices
        image_ids = [self.image_ids[i] for i in indices]
        return {"images": [self._instance_images[i] for i in image_ids if i in self._instance_images],
                "annotations": [a for i in image_ids for a in self._instances.get(i, [])],
                "categories": self._categories}

    def sample(self, index: int) -> Sample:
        """The image with every ground truth the dataset has."""
        image = self.read_image(index)
        if (image.height, image.width) != self._sizes[index]:
            raise DatasetError(f"{self._images.where(join(self.split, self.keys[index]))}: the image is "
                               f"{image.width}x{image.height}, its annotation says "
                               f"{self._sizes[index][1]}x{self._sizes[index][0]}")
        sample = Sample(self.stems[index], image)
        if "panoptic" in self.tasks:
            sample.segment_map, sample.segments = self.panoptic(index)
            sample.semantic = semantic_from_panoptic(sample.segment_map, sample.segments)
        if "instance" in self.tasks:
            sample.instances = self.instances(index)
        return sample

    __getitem__ = sample
