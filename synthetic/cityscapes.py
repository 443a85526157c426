"""Small Cityscapes datasets in the real zips' layout, for tests and benchmarks (datasets-reference.md):

    leftImg8bit_trainvaltest.zip   README, license.txt, leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine_trainvaltest.zip        README, license.txt, gtFine/<split>/<city>/<stem>_gtFine_{labelIds,instanceIds,
                                   color}.png and _gtFine_polygons.json

Scenes use label ids outside the 19 evaluation classes (ego vehicle, ground, caravan, ...) that must come out as
ignore, thing instances (label * 1000 + k, 16-bit instanceIds) and a group region (a thing label id below 1000).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from eomt import atomic
from segdata.cityscapes import IMAGES_ZIP, LABELS_ZIP
from segdata.zip_writing import add_folders, add_member, encode

# Label ids (cityscapesScripts' labels.py).
UNLABELED, EGO_VEHICLE, GROUND, ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = 0, 1, 6, 7, 8, 11, 21, 23
PERSON, RIDER, CAR, CARAVAN, BICYCLE = 24, 25, 26, 29, 33


@dataclass
class CityscapesImage:
    city: str
    seq: int
    frame: int
    photo: np.ndarray  # (H, W, 3) uint8
    label_ids: np.ndarray  # (H, W) uint8 label ids 0..33
    instance_ids: np.ndarray  # (H, W) int32: label id, or label id * 1000 + k

    @property
    def stem(self) -> str:
        return f"{self.city}_{self.seq:06d}_{self.frame:06d}"


def toy_image(rng: np.random.Generator, city: str, seq: int, frame: int, height: int = 32,
              width: int = 64) -> CityscapesImage:
    """Sky, building, road and sidewalk with an ego-vehicle strip and some ground, a few cars, persons and a
    caravan (ignored), and a group of bicycles without instance numbers."""
    label_ids = np.full((height, width), ROAD, np.uint8)
    label_ids[: height // 4] = SKY
    label_ids[height // 4: height // 2] = rng.choice([BUILDING, VEGETATION])
    label_ids[height // 2:, : width // 5] = SIDEWALK
    label_ids[height // 2: height // 2 + 2, width // 2:] = GROUND
    label_ids[-3:] = EGO_VEHICLE
    label_ids[0, :3] = UNLABELED
    instance_ids = label_ids.astype(np.int32)
    counters: dict[int, int] = {}
    for label in rng.choice([CAR, CAR, PERSON, RIDER, CARAVAN], size=int(rng.integers(1, 5))):
        h, w = int(rng.integers(3, height // 3)), int(rng.integers(3, width // 4))
        y, x = int(rng.integers(height // 3, height - 3 - h)), int(rng.integers(0, width - w))
        label_ids[y:y + h, x:x + w] = label
        instance_ids[y:y + h, x:x + w] = label * 1000 + counters.setdefault(int(label), 0)
        counters[int(label)] += 1
    label_ids[height - 8: height - 4, width - 10: width - 2] = BICYCLE  # a group: id below 1000
    instance_ids[height - 8: height - 4, width - 10: width - 2] = BICYCLE
    palette = rng.integers(0, 256, size=(34, 3))
    photo = (palette[label_ids] // 2 + rng.integers(0, 128, size=(height, width, 3))).astype(np.uint8)
    return CityscapesImage(city, seq, frame, photo, label_ids, instance_ids)


def toy_images(seed: int = 0, cities: tuple[str, ...] = ("munster", "frankfurt", "lindau"),
               per_city: int = 2) -> list[CityscapesImage]:
    rng = np.random.default_rng(seed)
    return [toy_image(rng, city, seq=int(rng.integers(0, 100)), frame=19 + 100 * k)
            for city in cities for k in range(per_city)]


def _png(array: np.ndarray) -> bytes:
    if array.dtype == np.int32:  # instanceIds: 16-bit grayscale as in the real files
        return encode(Image.fromarray(array.astype(np.uint16)), "PNG")
    return encode(Image.fromarray(array), "PNG")


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        add_member(archive, "README", b"toy Cityscapes\n")
        add_member(archive, "license.txt", b"for tests only\n")
        for name, data in members.items():
            add_folders(archive, name.rsplit("/", 1)[0])
            add_member(archive, name, data)
    return buffer.getvalue()


def write_cityscapes_zips(folder: str | Path, splits: dict[str, list[CityscapesImage]],
                          instance_ids: bool = True) -> Path:
    """Writes leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into `folder` for {split: images};
    `instance_ids=False` leaves out the instanceIds PNGs."""
    images, labels = {}, {}
    for split, split_images in splits.items():
        for image in split_images:
            base = f"{split}/{image.city}/{image.stem}"
            images[f"leftImg8bit/{base}_leftImg8bit.png"] = _png(image.photo)
            gt = f"gtFine/{base}_gtFine"
            labels[f"{gt}_color.png"] = _png(np.zeros((*image.label_ids.shape, 3), np.uint8))
            if instance_ids:
                labels[f"{gt}_instanceIds.png"] = _png(image.instance_ids)
            labels[f"{gt}_labelIds.png"] = _png(image.label_ids)
            labels[f"{gt}_polygons.json"] = json.dumps({"imgHeight": image.label_ids.shape[0],
                                                        "imgWidth": image.label_ids.shape[1],
                                                        "objects": []}).encode()
    folder = Path(folder)
    atomic.write_bytes(folder / IMAGES_ZIP, _zip_bytes(images))
    atomic.write_bytes(folder / LABELS_ZIP, _zip_bytes(labels))
    return folder
