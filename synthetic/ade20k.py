"""Small random ADE20K-format datasets (the real zip layout) for the dump's tests and benchmark."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from segdata.ade20k_writer import write_ade20k_zips

# (class id, instance R value) of a few ADE20K thing classes; stuff classes by id.
PERSON, CAR, CHAIR = (12, 4), (20, 9), (19, 8)
SKY, FLOOR, WALL, GRASS = 2, 3, 0, 9


def toy_scene(rng: np.random.Generator, height: int, width: int, gray: bool = False):
    """A photo, its semantic PNG (class id + 1, 0 void) and instance PNG (R category, G index)."""
    semantic = np.zeros((height, width), np.uint8)
    horizon = int(rng.integers(height // 4, height // 2))
    top, bottom = rng.choice([SKY, WALL]), rng.choice([FLOOR, GRASS])
    semantic[:horizon] = top + 1
    semantic[horizon:] = bottom + 1
    semantic[: max(1, height // 10), : width // 5] = 0  # some unlabeled pixels
    instance = np.zeros((height, width, 3), np.uint8)
    for g in range(1, int(rng.integers(2, 5)) + 1):
        class_id, red = [PERSON, CAR, CHAIR][int(rng.integers(0, 3))]
        h, w = int(rng.integers(height // 6, height // 2)), int(rng.integers(width // 8, width // 3))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        semantic[y : y + h, x : x + w] = class_id + 1
        instance[y : y + h, x : x + w] = (red, g, 0)
    palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    photo = palette[semantic] // 2 + rng.integers(0, 128, size=(height, width, 3), dtype=np.uint8)
    if gray:
        photo = np.repeat(photo.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    return photo.astype(np.uint8), semantic, instance


def write_toy_ade20k(folder: Path, n_images: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n_images):
        height, width = size if i % 3 else (size[1], size[0])  # portrait and landscape
        photo, semantic, instance = toy_scene(rng, height, width, gray=(i == 1))
        samples.append((f"ADE_val_{i + 1:08d}", photo, semantic, instance))
    write_ade20k_zips(folder, {"validation": samples})
    return folder


def corrupt_zip_member(zip_path: Path, member_suffix: str, keep_bytes: int = 40) -> str:
    """Rewrites the zip with the member ending in `member_suffix` truncated; returns the member's name."""
    with zipfile.ZipFile(zip_path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    target = None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as dst:
        for info, data in members:
            if info.filename.endswith(member_suffix):
                target, data = info.filename, data[:keep_bytes]
            dst.writestr(info, data)
    zip_path.write_bytes(buffer.getvalue())
    assert target is not None, member_suffix
    return target
