"""Small COCO 2017 datasets in the real zips' layout, for tests and benchmarks (datasets-reference.md):

    val2017.zip                              val2017/000000000139.jpg ...
    panoptic_annotations_trainval2017.zip    annotations/panoptic_val2017.json
                                             annotations/panoptic_val2017.zip  (a zip inside the zip:
                                                 panoptic_val2017/000000000139.png ...)
    annotations_trainval2017.zip             annotations/instances_val2017.json

with the awkward parts of the real files: image and category ids with gaps, segment ids spread over 24 bits,
things as polygons (several per object, overlapping each other) whose JSON area is the polygon's (not a pixel
count), crowd regions as uncompressed RLE, and images without any instance.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from eomt import atomic
from eomt.classes import coco_instance_classes, coco_panoptic_classes
from metrics.coco_panoptic import areas_and_bboxes, id2rgb
from segdata.coco import INSTANCES_ZIP, PANOPTIC_ZIP
from segdata.zip_writing import add_folders, add_member, encode

# A few categories by their COCO ids (things 1..90, stuff 92..200, both with gaps).
PERSON, CAR, STOP_SIGN, TOOTHBRUSH = 1, 3, 13, 90
THINGS = (PERSON, CAR, STOP_SIGN, TOOTHBRUSH)
SKY, TREE, WALL, RUG = 187, 184, 199, 200


@dataclass
class CocoImage:
    """One image with both annotations, in the files' own ids."""

    id: int
    photo: np.ndarray  # (H, W, 3) uint8
    segment_map: np.ndarray  # (H, W) int32 panoptic segment ids, 0 = void
    segments_info: list[dict]  # {"id", "category_id", "iscrowd", "area", "bbox"}
    instances: list[dict] = field(default_factory=list)  # COCO instance annotations (no "id" yet)

    @property
    def file_name(self) -> str:
        return f"{self.id:012d}.jpg"


def polygon_area(polygon: list[float]) -> float:
    """Shoelace area of a flat [x1, y1, x2, y2, ...] polygon (what the real files' `area` of polygons is)."""
    xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> list[float]:
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    radius = rng.uniform(0.1, 0.3) * min(height, width)
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 7))))
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    points = np.clip(points, 0, [width - 1, height - 1])
    return [round(float(v), 2) for v in points.ravel()]


def _polygons_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """{"counts": [run lengths, column-major, starting with zeros], "size": [h, w]}: how the real files store
    crowd regions."""
    flat = np.asfortranarray(mask).ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"counts": counts, "size": list(mask.shape)}


def toy_image(rng: np.random.Generator, image_id: int, height: int = 48, width: int = 64,
              crowd: bool = False, things: int | None = None) -> CocoImage:
    """A photo with two stuff regions, 0-4 thing polygons painted over them (later ones on top) and, with
    `crowd`, a rectangle of people as a crowd region; a strip of void at the bottom."""
    segment_ids = iter(rng.choice(np.arange(1, 1 << 24), size=16, replace=False).tolist())
    layers = []  # (category, mask, iscrowd, instance segmentation or None)
    horizon = int(rng.integers(height // 4, height // 2))
    top, bottom = np.zeros((height, width), bool), np.zeros((height, width), bool)
    top[:horizon], bottom[horizon:height - 3] = True, True
    layers += [(int(rng.choice([SKY, WALL])), top, 0, None), (int(rng.choice([TREE, RUG])), bottom, 0, None)]
    if crowd:
        mask = np.zeros((height, width), bool)
        mask[height // 2:, : width // 3] = True
        layers.append((PERSON, mask, 1, uncompressed_rle(mask)))
    for _ in range(int(rng.integers(0, 5)) if things is None else things):
        polygons = [_random_polygon(rng, height, width) for _ in range(int(rng.integers(1, 3)))]
        mask = _polygons_mask(polygons, height, width)
        if mask.any():
            layers.append((int(rng.choice(THINGS)), mask, 0, polygons))

    segment_map = np.zeros((height, width), np.int32)
    ids = []
    for _, mask, *_ in layers:
        ids.append(next(segment_ids))
        segment_map[mask] = ids[-1]
    areas, bboxes = areas_and_bboxes(segment_map, ids)
    segments_info, instances = [], []
    for segment_id, (category, mask, iscrowd, segmentation), area, bbox in zip(ids, layers, areas, bboxes,
                                                                                strict=True):
        if area:
            segments_info.append({"id": segment_id, "category_id": category, "iscrowd": iscrowd, "area": area,
                                  "bbox": bbox})
        if segmentation is not None:
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            instances.append({"image_id": image_id, "category_id": category, "iscrowd": iscrowd, "bbox": box,
                              "area": float(mask.sum()) if iscrowd else sum(map(polygon_area, segmentation)),
                              "segmentation": segmentation})
    palette = rng.integers(0, 256, size=(len(ids) + 1, 3))
    index = np.searchsorted(np.array([0] + sorted(ids)), segment_map)
    ys, xs = np.mgrid[0:height, 0:width]
    shading = (ys + xs)[..., None] * 64 // (height + width)  # smooth, so JPEG keeps it close
    photo = (palette[index] * 3 // 4 + shading).astype(np.uint8)
    return CocoImage(image_id, photo, segment_map, segments_info, instances)


def toy_images(n: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list[CocoImage]:
    """n images with ids that have gaps, portrait and landscape, every third with a crowd region, the second
    one without any thing."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 600000), size=n, replace=False))
    return [toy_image(rng, int(image_id), *(size if i % 2 == 0 else size[::-1]), crowd=i % 3 == 0,
                      things=0 if i == 1 else None)
            for i, image_id in enumerate(ids)]


def _zip_bytes(members: dict[str, bytes], compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            add_folders(archive, name.rsplit("/", 1)[0])
            add_member(archive, name, data)
    return buffer.getvalue()


def _image_entry(image: CocoImage) -> dict:
    height, width = image.segment_map.shape
    return {"id": image.id, "file_name": image.file_name, "height": height, "width": width, "license": 1}


def panoptic_document(images: list[CocoImage]) -> dict:
    categories = [{"id": c.coco_id, "name": c.name, "isthing": int(c.isthing), "supercategory": "toy"}
                  for c in coco_panoptic_classes()]
    annotations = [{"image_id": image.id, "file_name": image.file_name.replace(".jpg", ".png"),
                    "segments_info": image.segments_info} for image in images]
    return {"info": {}, "licenses": [], "images": [_image_entry(i) for i in images], "annotations": annotations,
            "categories": categories}


def instances_document(images: list[CocoImage]) -> dict:
    categories = [{"id": c.coco_id, "name": c.name, "supercategory": "toy"} for c in coco_instance_classes()]
    annotations = [dict(annotation, id=1000 + k)
                   for k, annotation in enumerate(a for image in images for a in image.instances)]
    return {"info": {}, "licenses": [], "images": [_image_entry(i) for i in images], "annotations": annotations,
            "categories": categories}


def write_coco_zips(folder: str | Path, images: list[CocoImage], split: str = "val2017",
                    panoptic_compression: int = zipfile.ZIP_STORED, jpeg_quality: int = 95) -> Path:
    """Writes `<split>.zip`, panoptic_annotations_trainval2017.zip (its members, the nested PNG zip among them,
    stored or deflated as `panoptic_compression` says) and annotations_trainval2017.zip into `folder`."""
    folder = Path(folder)
    pngs = {f"panoptic_{split}/{image.file_name.replace('.jpg', '.png')}":
            encode(Image.fromarray(id2rgb(image.segment_map)), "PNG") for image in images}
    photos = {f"{split}/{image.file_name}": encode(Image.fromarray(image.photo), "JPEG", quality=jpeg_quality)
              for image in images}
    panoptic = {f"annotations/panoptic_{split}.json": json.dumps(panoptic_document(images)).encode(),
                f"annotations/panoptic_{split}.zip": _zip_bytes(pngs, zipfile.ZIP_DEFLATED)}
    instances = {f"annotations/instances_{split}.json": json.dumps(instances_document(images)).encode()}
    atomic.write_bytes(folder / f"{split}.zip", _zip_bytes(photos, zipfile.ZIP_STORED))
    atomic.write_bytes(folder / PANOPTIC_ZIP, _zip_bytes(panoptic, panoptic_compression))
    atomic.write_bytes(folder / INSTANCES_ZIP, _zip_bytes(instances, zipfile.ZIP_DEFLATED))
    return folder
