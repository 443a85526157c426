"""Writes small ADE20K-format datasets: ADEChallengeData2016.zip + annotations_instance.zip, member for member in
the layout of the real ones, for tests and for the demo data.

    write_ade20k_zips(folder, {"validation": [(stem, image, semantic, instance_or_None), ...], "training": [...]})
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from eomt import atomic
from segdata.ade20k import IMAGES_ZIP, INSTANCE_TOP, INSTANCES_ZIP, SPLITS, TOP
from segdata.zip_writing import add_member, encode


def _image_jpeg(image, quality: int) -> bytes:
    # A PIL image is saved in its own mode, so grayscale ("L") and CMYK JPEGs, as found in ADE20K, can be made.
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
            raise ValueError(f"an image must be HxWx3 or HxW uint8, got {array.shape} {array.dtype}")
        image = Image.fromarray(array)
    elif image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    return encode(image, "JPEG", quality=quality)


def _check_annotation(array, shape: tuple[int, ...], what: str, stem: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.shape != shape:
        raise ValueError(f"{stem}: the {what} must be {shape} uint8 like the image, got {array.shape} {array.dtype}")
    return array


def write_ade20k_zips(folder: str | os.PathLike, splits: Mapping[str, Iterable[tuple]],
                      jpeg_quality: int = 95) -> tuple[Path, Path]:
    """Writes both zips into `folder` (atomically) and returns their paths.

    splits: {"validation" | "training": [(stem, image, semantic, instance), ...]} with image an HxWx3 / HxW uint8
    array or a PIL image (saved as JPEG in its mode), semantic an HxW uint8 array (0 = unlabeled, v = class v - 1),
    instance an HxWx3 uint8 array (R = instance category, G = instance index) or None for no instance PNG.
    """
    folder = Path(folder)
    images_buffer, instances_buffer = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(images_buffer, "w", zipfile.ZIP_DEFLATED) as images_zip, \
            zipfile.ZipFile(instances_buffer, "w", zipfile.ZIP_STORED) as instances_zip:  # zip -r -0
        add_member(images_zip, f"{TOP}/")
        for sub in ("images", "annotations"):
            add_member(images_zip, f"{TOP}/{sub}/")
        add_member(instances_zip, f"{INSTANCE_TOP}/")
        for split, samples in splits.items():
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            for sub in ("images", "annotations"):
                add_member(images_zip, f"{TOP}/{sub}/{split}/")
            add_member(instances_zip, f"{INSTANCE_TOP}/{split}/")
            for stem, image, semantic, instance in samples:
                size = image.size[::-1] if isinstance(image, Image.Image) else np.asarray(image).shape[:2]
                semantic = _check_annotation(semantic, tuple(size), "semantic map", stem)
                add_member(images_zip, f"{TOP}/images/{split}/{stem}.jpg", _image_jpeg(image, jpeg_quality))
                add_member(images_zip, f"{TOP}/annotations/{split}/{stem}.png",
                        encode(Image.fromarray(semantic), "PNG"))
                if instance is not None:
                    instance = _check_annotation(instance, (*size, 3), "instance map", stem)
                    add_member(instances_zip, f"{INSTANCE_TOP}/{split}/{stem}.png",
                            encode(Image.fromarray(instance), "PNG"))
    images_path, instances_path = folder / IMAGES_ZIP, folder / INSTANCES_ZIP
    atomic.write_bytes(images_path, images_buffer.getvalue())
    atomic.write_bytes(instances_path, instances_buffer.getvalue())
    return images_path, instances_path
